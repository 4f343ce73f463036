//! Connecting calls: every transport, NBD URIs, and the subprocess.
//!
//! Each `aio_connect_*` call starts connecting and makes what progress it
//! can without blocking; the matching `connect_*` call is the same start
//! followed by [`run_until`] the handle is no longer connecting, so both
//! styles share one code path.

use std::os::fd::OwnedFd;
use std::path::Path;

use super::{run_until, Handle, Limits, CONNECTED};
use crate::callback::Completion;
use crate::conn::{c_strings, Conn, Perm, ServerAddr};
use crate::flags::{AllowTransport, IpFamily, Tls};
use crate::Result;

impl Handle {
    // ---- the common path ------------------------------------------------------

    /// Checks the handle is newly created, runs `start` and makes what
    /// progress can be made without blocking.
    fn aio_start(c: &mut Conn, start: impl FnOnce(&mut Conn) -> Result<()>) -> Result<()> {
        c.check_state(&[Perm::Created])?;
        start(c)?;
        c.progress()
    }

    /// Starts connecting with `start`, then drives the handle until the
    /// connection is made (or fails).
    fn connect_with(&self, start: impl FnOnce(&mut Conn) -> Result<()>) -> Result<()> {
        let mut c = self.lock();
        let limits = self.limits();
        Self::aio_start(&mut c, start)?;
        Self::wait_connected(&mut c, limits)
    }

    fn wait_connected(c: &mut Conn, limits: Limits<'_>) -> Result<()> {
        run_until(c, limits, |c| !c.is_connecting())?;
        // Opt mode stops in negotiation, which counts as success.
        if c.is_negotiating() {
            return Ok(());
        }
        c.check_state(CONNECTED)
    }

    // ---- transports -------------------------------------------------------------

    /// Connects to a server listening on the Unix domain socket `path`.
    ///
    /// libnbd: `nbd_connect_unix`.
    pub fn connect_unix<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        let addr = ServerAddr::Unix(path.as_ref().to_path_buf());
        self.connect_with(|c| c.start_connect_to(&addr))
    }

    /// Starts connecting to the Unix domain socket `path`.
    ///
    /// libnbd: `nbd_aio_connect_unix`.
    pub fn aio_connect_unix<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        let addr = ServerAddr::Unix(path.as_ref().to_path_buf());
        Self::aio_start(&mut self.lock(), |c| c.start_connect_to(&addr))
    }

    /// Connects over TCP to `host` at `port` (a number or a service name),
    /// trying each address the name resolves to in turn.
    ///
    /// libnbd: `nbd_connect_tcp`.
    pub fn connect_tcp(&self, host: &str, port: &str) -> Result<()> {
        self.connect_with(|c| c.start_connect_tcp(host, port))
    }

    /// Starts connecting over TCP; see [`Handle::connect_tcp`].
    ///
    /// libnbd: `nbd_aio_connect_tcp`.
    pub fn aio_connect_tcp(&self, host: &str, port: &str) -> Result<()> {
        Self::aio_start(&mut self.lock(), |c| c.start_connect_tcp(host, port))
    }

    /// Connects over `AF_VSOCK` to `port` on the machine `cid`.
    ///
    /// libnbd: `nbd_connect_vsock`.
    pub fn connect_vsock(&self, cid: u32, port: u32) -> Result<()> {
        self.connect_with(|c| c.start_connect_to(&ServerAddr::Vsock { cid, port }))
    }

    /// Starts connecting over `AF_VSOCK`.
    ///
    /// libnbd: `nbd_aio_connect_vsock`.
    pub fn aio_connect_vsock(&self, cid: u32, port: u32) -> Result<()> {
        Self::aio_start(&mut self.lock(), |c| {
            c.start_connect_to(&ServerAddr::Vsock { cid, port })
        })
    }

    /// Starts connecting to a server's address: an IP address and port
    /// (a [`std::net::SocketAddr`] converts), a Unix domain socket, or a vsock
    /// address. There is no blocking twin, as in libnbd.
    ///
    /// libnbd: `nbd_aio_connect`.
    pub fn aio_connect(&self, addr: impl Into<ServerAddr>) -> Result<()> {
        let addr = addr.into();
        Self::aio_start(&mut self.lock(), |c| c.start_connect_to(&addr))
    }

    /// Connects over `sock`, a socket already connected to a server; the
    /// handle owns it from now on.
    ///
    /// libnbd: `nbd_connect_socket`.
    pub fn connect_socket(&self, sock: OwnedFd) -> Result<()> {
        let mut c = self.lock();
        let limits = self.limits();
        Self::aio_start(&mut c, |c| c.adopt_socket(sock))?;
        Self::wait_connected(&mut c, limits)
    }

    /// Starts the handshake over `sock`, an already connected socket.
    ///
    /// libnbd: `nbd_aio_connect_socket`.
    pub fn aio_connect_socket(&self, sock: OwnedFd) -> Result<()> {
        Self::aio_start(&mut self.lock(), |c| c.adopt_socket(sock))
    }

    /// Runs `argv` as a subprocess serving NBD on its stdin/stdout, and
    /// connects to it (through the handshake, to transmission).
    ///
    /// libnbd: `nbd_connect_command`.
    pub fn connect_command<S: AsRef<[u8]>>(&self, argv: &[S]) -> Result<()> {
        let args = c_strings(argv);
        self.connect_with(|c| c.start_command(&args?, None))
    }

    /// Starts a subprocess serving NBD on its stdin/stdout, and starts the
    /// handshake with it.
    ///
    /// libnbd: `nbd_aio_connect_command`.
    pub fn aio_connect_command<S: AsRef<[u8]>>(&self, argv: &[S]) -> Result<()> {
        let args = c_strings(argv);
        Self::aio_start(&mut self.lock(), |c| c.start_command(&args?, None))
    }

    /// As [`Handle::connect_command`], with `env` (`NAME=VALUE` entries)
    /// as the whole environment of the subprocess (beyond libnbd).
    ///
    /// Beyond libnbd; in C: `rnbd_connect_command_env`.
    pub fn connect_command_env<S: AsRef<[u8]>, E: AsRef<[u8]>>(
        &self,
        argv: &[S],
        env: &[E],
    ) -> Result<()> {
        let (args, env) = (c_strings(argv), c_strings(env));
        self.connect_with(|c| c.start_command(&args?, Some(&env?)))
    }

    /// As [`Handle::aio_connect_command`], with `env` as the whole
    /// environment of the subprocess (beyond libnbd).
    ///
    /// Beyond libnbd; in C: `rnbd_aio_connect_command_env`.
    pub fn aio_connect_command_env<S: AsRef<[u8]>, E: AsRef<[u8]>>(
        &self,
        argv: &[S],
        env: &[E],
    ) -> Result<()> {
        let (args, env) = (c_strings(argv), c_strings(env));
        Self::aio_start(&mut self.lock(), |c| c.start_command(&args?, Some(&env?)))
    }

    /// Runs a command configured with [`std::process::Command`] (its
    /// arguments, environment, working directory and the rest) as the
    /// server on its stdin/stdout, and connects to it (beyond libnbd). Its
    /// stdin and stdout are replaced, and its stderr too when the handle
    /// captures stderr ([`Handle::set_capture_stderr`]).
    pub fn connect_process(&self, cmd: &mut std::process::Command) -> Result<()> {
        self.connect_with(|c| c.start_process(cmd))
    }

    /// Starts a [`std::process::Command`] as the server and starts the
    /// handshake with it (beyond libnbd).
    pub fn aio_connect_process(&self, cmd: &mut std::process::Command) -> Result<()> {
        Self::aio_start(&mut self.lock(), |c| c.start_process(cmd))
    }

    /// A callback for when the connection is ready for commands (beyond
    /// libnbd): called once, with error 0 when the handshake completes
    /// (after `opt_go` in option mode), or with the errno of the failure
    /// (EIO when it has none) if the connection dies before that. Like
    /// every callback it runs with the handle locked and must not call
    /// the handle. Dropped unused if the handle is closed first.
    ///
    /// Beyond libnbd; in C: `rnbd_set_ready_callback`.
    pub fn set_ready_callback(&self, callback: Completion) -> Result<()> {
        self.lock().set_ready_callback(callback)
    }

    /// Which IP addresses [`Handle::connect_tcp`] (and `nbd://` URIs)
    /// try: IPv4 only, IPv6 only, or both in the resolver's order (the
    /// default, as libnbd) (beyond libnbd). A name with no address of the
    /// family fails with the resolver's message.
    ///
    /// Beyond libnbd; in C: `rnbd_set_ip_family`.
    pub fn set_ip_family(&self, family: IpFamily) -> Result<()> {
        self.lock().set_ip_family(family)
    }

    /// See [`Handle::set_ip_family`].
    ///
    /// Beyond libnbd; in C: `rnbd_get_ip_family`.
    pub fn ip_family(&self) -> IpFamily {
        self.lock().ip_family()
    }

    /// Whether a subprocess's stderr is captured (default false, as
    /// libnbd; `nbd+ssh` URIs always capture). Captured, it still reaches
    /// our stderr, its last lines are kept for
    /// [`Handle::subprocess_stderr`], and when the connection breaks the
    /// error says how the subprocess ended and what it printed last
    /// ("nbdkit exited with status 1: nbdkit: error: ...").
    ///
    /// Beyond libnbd; in C: `rnbd_set_capture_stderr`.
    pub fn set_capture_stderr(&self, capture: bool) -> Result<()> {
        self.lock().set_capture_stderr(capture)
    }

    /// See [`Handle::set_capture_stderr`].
    ///
    /// Beyond libnbd; in C: `rnbd_get_capture_stderr`.
    pub fn capture_stderr(&self) -> bool {
        self.lock().capture_stderr()
    }

    /// The last lines the subprocess printed on stderr, when it is
    /// captured; `None` if there is no subprocess, its stderr is not
    /// captured, or it printed nothing.
    ///
    /// Beyond libnbd; in C: `rnbd_get_subprocess_stderr`.
    pub fn subprocess_stderr(&self) -> Option<String> {
        // Read with the handle unlocked.
        let tail = self.lock().subprocess_stderr()?;
        tail.last_lines(std::time::Duration::ZERO)
    }

    /// Whether closing the handle waits for the subprocess to exit
    /// (default true, as libnbd: up to about 4 s, then SIGTERM and
    /// SIGKILL). False closes at once and leaves the waiting to a thread.
    ///
    /// Beyond libnbd; in C: `rnbd_set_close_waits_for_subprocess`.
    pub fn set_close_waits_for_subprocess(&self, wait: bool) {
        self.lock().set_close_waits_for_subprocess(wait);
    }

    /// See [`Handle::set_close_waits_for_subprocess`].
    ///
    /// Beyond libnbd; in C: `rnbd_get_close_waits_for_subprocess`.
    pub fn close_waits_for_subprocess(&self) -> bool {
        self.lock().close_waits_for_subprocess()
    }

    /// Runs `argv` as a server under systemd socket activation (a listening
    /// socket as fd 3, `LISTEN_PID`, `LISTEN_FDS` and, if named,
    /// `LISTEN_FDNAMES`) and connects to it. Closing the handle stops it.
    ///
    /// libnbd: `nbd_connect_systemd_socket_activation`.
    pub fn connect_systemd_socket_activation<S: AsRef<[u8]>>(&self, argv: &[S]) -> Result<()> {
        let args = c_strings(argv);
        self.connect_with(|c| c.start_socket_activation(&args?))
    }

    /// Starts a server under socket activation and starts connecting to it.
    ///
    /// libnbd: `nbd_aio_connect_systemd_socket_activation`.
    pub fn aio_connect_systemd_socket_activation<S: AsRef<[u8]>>(&self, argv: &[S]) -> Result<()> {
        let args = c_strings(argv);
        Self::aio_start(&mut self.lock(), |c| c.start_socket_activation(&args?))
    }

    /// Names the socket passed under socket activation (`LISTEN_FDNAMES`):
    /// a short alphanumeric string, or `""` for none.
    ///
    /// libnbd: `nbd_set_socket_activation_name`.
    pub fn set_socket_activation_name<N: AsRef<[u8]>>(&self, name: N) -> Result<()> {
        self.lock().set_socket_activation_name(name.as_ref())
    }

    /// The socket activation name (`""` by default).
    ///
    /// libnbd: `nbd_get_socket_activation_name`.
    pub fn socket_activation_name(&self) -> String {
        self.lock().socket_activation_name().to_string()
    }

    // ---- URIs ----------------------------------------------------------------------

    /// Connects to the server and export an NBD URI names
    /// (`nbd://host:port/export`, `nbd+unix:///export?socket=PATH`,
    /// `nbd+vsock://cid:port/export`).
    ///
    /// libnbd: `nbd_connect_uri`.
    pub fn connect_uri<U: AsRef<[u8]>>(&self, uri: U) -> Result<()> {
        self.connect_with(|c| c.start_uri(uri.as_ref()))
    }

    /// Starts connecting to the server an NBD URI names.
    ///
    /// libnbd: `nbd_aio_connect_uri`.
    pub fn aio_connect_uri<U: AsRef<[u8]>>(&self, uri: U) -> Result<()> {
        Self::aio_start(&mut self.lock(), |c| c.start_uri(uri.as_ref()))
    }

    /// A URI that would connect to the same server and export, where the
    /// handle knows enough to make one.
    ///
    /// libnbd: `nbd_get_uri`.
    pub fn get_uri(&self) -> Result<String> {
        self.lock().uri()
    }

    /// Whether `s` looks like an NBD URI (a quick test of its scheme; it
    /// does not promise that [`Handle::connect_uri`] will accept it).
    ///
    /// libnbd: `nbd_is_uri`.
    pub fn is_uri<U: AsRef<[u8]>>(&self, s: U) -> bool {
        crate::uri::is_uri(s.as_ref())
    }

    /// Whether this library supports NBD URIs: always.
    ///
    /// libnbd: `nbd_supports_uri`.
    pub fn supports_uri(&self) -> bool {
        true
    }

    /// Whether this library supports `AF_VSOCK`: always on Linux (the
    /// kernel may still lack it, which connecting reports).
    ///
    /// libnbd: `nbd_supports_vsock`.
    pub fn supports_vsock(&self) -> bool {
        true
    }

    /// Which transports (`LIBNBD_ALLOW_TRANSPORT_*`) URIs may use.
    ///
    /// libnbd: `nbd_set_uri_allow_transports`.
    pub fn set_uri_allow_transports(&self, mask: AllowTransport) -> Result<()> {
        self.lock().set_uri_allow_transports(mask.bits())
    }

    /// The transports URIs may use (all by default).
    ///
    /// libnbd has only the setter, `nbd_set_uri_allow_transports`.
    pub fn uri_allow_transports(&self) -> AllowTransport {
        AllowTransport::from_bits_retain(self.lock().uri_allow_transports())
    }

    /// Whether URIs may, must, or must not ask for TLS (`LIBNBD_TLS_*`).
    ///
    /// libnbd: `nbd_set_uri_allow_tls`.
    pub fn set_uri_allow_tls(&self, tls: Tls) -> Result<()> {
        self.lock().set_uri_allow_tls(tls as i32)
    }

    /// The URI TLS setting (`LIBNBD_TLS_ALLOW` by default).
    ///
    /// libnbd has only the setter, `nbd_set_uri_allow_tls`.
    pub fn uri_allow_tls(&self) -> Tls {
        Tls::from_raw(self.lock().uri_allow_tls()).unwrap_or_default()
    }

    /// Whether URIs may name local files (off by default).
    ///
    /// libnbd: `nbd_set_uri_allow_local_file`.
    pub fn set_uri_allow_local_file(&self, allow: bool) -> Result<()> {
        self.lock().set_uri_allow_local_file(allow)
    }

    /// Whether URIs may name local files.
    ///
    /// libnbd has only the setter, `nbd_set_uri_allow_local_file`.
    pub fn uri_allow_local_file(&self) -> bool {
        self.lock().uri_allow_local_file()
    }

    // ---- the subprocess ---------------------------------------------------------------

    /// The process id of the server started by [`Handle::connect_command`]
    /// or [`Handle::connect_systemd_socket_activation`]
    /// (`nbd_get_subprocess_pid`); `None` when there is no subprocess.
    pub fn subprocess_pid(&self) -> Option<i32> {
        self.lock().subprocess_pid()
    }

    /// Sends `signum` (SIGTERM when 0) to the server subprocess.
    ///
    /// libnbd: `nbd_kill_subprocess`.
    pub fn kill_subprocess(&self, signum: i32) -> Result<()> {
        self.lock().kill_subprocess(signum)
    }
}
