//! Connecting calls: every transport, NBD URIs, and the subprocess.
//!
//! Each `aio_connect_*` call starts connecting and makes what progress it
//! can without blocking; the matching `connect_*` call is the same start
//! followed by [`run_until`] the handle is no longer connecting, so both
//! styles share one code path.

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{run_until, Handle, CONNECTED};
use crate::callback::Completion;
use crate::conn::{Conn, Perm};
use crate::flags::raw::{LIBNBD_ALLOW_TRANSPORT_MASK, LIBNBD_TLS_DISABLE, LIBNBD_TLS_REQUIRE};
use crate::flags::{AllowTransport, IpFamily, Tls};
use crate::transport::{self, SockAddr};
use crate::uri::{self, Target};
use crate::{proto, Error, Result};

/// States in which `get_uri` can answer.
const URI_STATES: &[Perm] = &[
    Perm::Connecting,
    Perm::Negotiating,
    Perm::Connected,
    Perm::Closed,
    Perm::Dead,
];

/// Longest socket activation name libnbd accepts.
const MAX_SOCKET_ACTIVATION_NAME: usize = 32;

fn c_strings<S: AsRef<[u8]>>(argv: &[S]) -> Result<Vec<CString>> {
    if argv.is_empty() {
        return Err(Error::new(
            libc::EINVAL,
            "missing command name in argv list",
        ));
    }
    argv.iter()
        .map(|a| CString::new(a.as_ref()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::new(libc::EINVAL, "argv contains a NUL byte"))
}

fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

fn unix_addr(path: &[u8]) -> Result<SockAddr> {
    SockAddr::unix(path).map_err(|_| {
        Error::new(
            libc::ENAMETOOLONG,
            format!(
                "socket path too long for a Unix domain socket: {}",
                String::from_utf8_lossy(path)
            ),
        )
    })
}

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
        Self::aio_start(&mut c, start)?;
        Self::wait_connected(&mut c, self.limits().deadline)
    }

    fn wait_connected(c: &mut Conn, deadline: Option<std::time::Instant>) -> Result<()> {
        run_until(c, deadline, |c| !c.is_connecting())?;
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
        let addr = unix_addr(path.as_ref().as_os_str().as_bytes())?;
        self.connect_with(|c| {
            c.start_connect(addr);
            Ok(())
        })
    }

    /// Starts connecting to the Unix domain socket `path`.
    ///
    /// libnbd: `nbd_aio_connect_unix`.
    pub fn aio_connect_unix<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        let addr = unix_addr(path.as_ref().as_os_str().as_bytes())?;
        Self::aio_start(&mut self.lock(), |c| {
            c.start_connect(addr);
            Ok(())
        })
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
        self.connect_with(|c| {
            c.start_connect(SockAddr::vsock(cid, port));
            Ok(())
        })
    }

    /// Starts connecting over `AF_VSOCK`.
    ///
    /// libnbd: `nbd_aio_connect_vsock`.
    pub fn aio_connect_vsock(&self, cid: u32, port: u32) -> Result<()> {
        Self::aio_start(&mut self.lock(), |c| {
            c.start_connect(SockAddr::vsock(cid, port));
            Ok(())
        })
    }

    /// Starts connecting to a socket address.
    ///
    /// libnbd: `nbd_aio_connect`.
    pub fn aio_connect(&self, addr: SocketAddr) -> Result<()> {
        self.aio_connect_sockaddr(SockAddr::inet(addr))
    }

    /// Starts connecting to any socket address (for `nbd_aio_connect`).
    pub(crate) fn aio_connect_sockaddr(&self, addr: SockAddr) -> Result<()> {
        Self::aio_start(&mut self.lock(), |c| {
            c.start_connect(addr);
            Ok(())
        })
    }

    /// Connects over `sock`, a socket already connected to a server; the
    /// handle owns it from now on.
    ///
    /// libnbd: `nbd_connect_socket`.
    pub fn connect_socket(&self, sock: OwnedFd) -> Result<()> {
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        Self::aio_start(&mut c, |c| Self::adopt_socket(c, sock.into_raw_fd()))?;
        Self::wait_connected(&mut c, self.limits().deadline)
    }

    /// Starts the handshake over `sock`, an already connected socket.
    ///
    /// libnbd: `nbd_aio_connect_socket`.
    pub fn aio_connect_socket(&self, sock: OwnedFd) -> Result<()> {
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        Self::aio_start(&mut c, |c| Self::adopt_socket(c, sock.into_raw_fd()))
    }

    /// As [`Handle::connect_socket`] for a C caller's fd, which is only
    /// taken over once it is known to be open.
    pub(crate) fn connect_socket_fd(&self, fd: RawFd, wait: bool) -> Result<()> {
        let mut c = self.lock();
        Self::aio_start(&mut c, |c| Self::adopt_socket(c, fd))?;
        if wait {
            Self::wait_connected(&mut c, self.limits().deadline)?;
        }
        Ok(())
    }

    fn adopt_socket(c: &mut Conn, fd: RawFd) -> Result<()> {
        let socket =
            transport::Socket::from_raw(fd).map_err(|e| Error::io("fcntl: set O_NONBLOCK", &e))?;
        c.start_handshake(Box::new(socket));
        Ok(())
    }

    /// Runs `argv` as a subprocess serving NBD on its stdin/stdout, and
    /// connects to it (through the handshake, to transmission).
    ///
    /// libnbd: `nbd_connect_command`.
    pub fn connect_command<S: AsRef<[u8]>>(&self, argv: &[S]) -> Result<()> {
        let args = c_strings(argv);
        self.connect_with(|c| Self::start_command(c, args?))
    }

    /// Starts a subprocess serving NBD on its stdin/stdout, and starts the
    /// handshake with it.
    ///
    /// libnbd: `nbd_aio_connect_command`.
    pub fn aio_connect_command<S: AsRef<[u8]>>(&self, argv: &[S]) -> Result<()> {
        let args = c_strings(argv);
        Self::aio_start(&mut self.lock(), |c| Self::start_command(c, args?))
    }

    fn start_command(c: &mut Conn, args: Vec<CString>) -> Result<()> {
        Self::start_command_env(c, args, None)
    }

    fn start_command_env(
        c: &mut Conn,
        args: Vec<CString>,
        env: Option<Vec<CString>>,
    ) -> Result<()> {
        let (socket, child) = transport::spawn_command(&args, env.as_deref(), c.net.capture_stderr)
            .map_err(|e| Error::io("connect_command", &e))?;
        c.subprocess = Some(child);
        c.start_handshake(Box::new(socket));
        Ok(())
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
        self.connect_with(|c| Self::start_command_env(c, args?, Some(env?)))
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
        Self::aio_start(&mut self.lock(), |c| {
            Self::start_command_env(c, args?, Some(env?))
        })
    }

    /// Runs a command configured with [`std::process::Command`] (its
    /// arguments, environment, working directory and the rest) as the
    /// server on its stdin/stdout, and connects to it (beyond libnbd). Its
    /// stdin and stdout are replaced, and its stderr too when the handle
    /// captures stderr ([`Handle::set_capture_stderr`]).
    pub fn connect_process(&self, cmd: &mut std::process::Command) -> Result<()> {
        self.connect_with(|c| Self::start_process(c, cmd))
    }

    /// Starts a [`std::process::Command`] as the server and starts the
    /// handshake with it (beyond libnbd).
    pub fn aio_connect_process(&self, cmd: &mut std::process::Command) -> Result<()> {
        Self::aio_start(&mut self.lock(), |c| Self::start_process(c, cmd))
    }

    fn start_process(c: &mut Conn, cmd: &mut std::process::Command) -> Result<()> {
        let (socket, child) = transport::spawn_process(cmd, c.net.capture_stderr)
            .map_err(|e| Error::io("connect_command", &e))?;
        c.subprocess = Some(child);
        c.start_handshake(Box::new(socket));
        Ok(())
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
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        c.on_ready = Some(callback);
        Ok(())
    }

    /// Which IP addresses [`Handle::connect_tcp`] (and `nbd://` URIs)
    /// try: IPv4 only, IPv6 only, or both in the resolver's order (the
    /// default, as libnbd) (beyond libnbd). A name with no address of the
    /// family fails with the resolver's message.
    ///
    /// Beyond libnbd; in C: `rnbd_set_ip_family`.
    pub fn set_ip_family(&self, family: IpFamily) -> Result<()> {
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        c.net.ip_family = family;
        Ok(())
    }

    /// See [`Handle::set_ip_family`].
    ///
    /// Beyond libnbd; in C: `rnbd_get_ip_family`.
    pub fn ip_family(&self) -> IpFamily {
        self.lock().net.ip_family
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
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        c.net.capture_stderr = capture;
        Ok(())
    }

    /// See [`Handle::set_capture_stderr`].
    ///
    /// Beyond libnbd; in C: `rnbd_get_capture_stderr`.
    pub fn capture_stderr(&self) -> bool {
        self.lock().net.capture_stderr
    }

    /// The last lines the subprocess printed on stderr, when it is
    /// captured; `None` if there is no subprocess, its stderr is not
    /// captured, or it printed nothing.
    ///
    /// Beyond libnbd; in C: `rnbd_get_subprocess_stderr`.
    pub fn subprocess_stderr(&self) -> Option<String> {
        let c = self.lock();
        let tail = c.subprocess.as_ref()?.stderr()?.clone();
        drop(c);
        tail.last_lines(std::time::Duration::ZERO)
    }

    /// Whether closing the handle waits for the subprocess to exit
    /// (default true, as libnbd: up to about 4 s, then SIGTERM and
    /// SIGKILL). False closes at once and leaves the waiting to a thread.
    ///
    /// Beyond libnbd; in C: `rnbd_set_close_waits_for_subprocess`.
    pub fn set_close_waits_for_subprocess(&self, wait: bool) {
        self.lock().net.detach_subprocess = !wait;
    }

    /// See [`Handle::set_close_waits_for_subprocess`].
    ///
    /// Beyond libnbd; in C: `rnbd_get_close_waits_for_subprocess`.
    pub fn close_waits_for_subprocess(&self) -> bool {
        !self.lock().net.detach_subprocess
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
        let name = name.as_ref();
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        if name.len() > MAX_SOCKET_ACTIVATION_NAME {
            return Err(Error::new(
                libc::ENAMETOOLONG,
                format!(
                    "socket activation name must be at most \
                     {MAX_SOCKET_ACTIVATION_NAME} characters"
                ),
            ));
        }
        if !name.iter().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::new(
                libc::EINVAL,
                "socket activation name must contain only ASCII letters and digits",
            ));
        }
        // Only ASCII letters and digits got here.
        c.net.socket_activation_name = String::from_utf8_lossy(name).into_owned();
        Ok(())
    }

    /// The socket activation name (`""` by default).
    ///
    /// libnbd: `nbd_get_socket_activation_name`.
    pub fn socket_activation_name(&self) -> String {
        self.lock().net.socket_activation_name.clone()
    }

    // ---- URIs ----------------------------------------------------------------------

    /// Connects to the server and export an NBD URI names
    /// (`nbd://host:port/export`, `nbd+unix:///export?socket=PATH`,
    /// `nbd+vsock://cid:port/export`).
    ///
    /// libnbd: `nbd_connect_uri`.
    pub fn connect_uri<U: AsRef<[u8]>>(&self, uri: U) -> Result<()> {
        self.connect_with(|c| Self::start_uri(c, uri.as_ref()))
    }

    /// Starts connecting to the server an NBD URI names.
    ///
    /// libnbd: `nbd_aio_connect_uri`.
    pub fn aio_connect_uri<U: AsRef<[u8]>>(&self, uri: U) -> Result<()> {
        Self::aio_start(&mut self.lock(), |c| Self::start_uri(c, uri.as_ref()))
    }

    fn start_uri(c: &mut Conn, raw: &[u8]) -> Result<()> {
        let policy = uri::Policy {
            allow_transports: c.net.uri_allow_transports,
            allow_tls: c.net.uri_allow_tls,
            allow_local_file: c.net.uri_allow_local_file,
        };
        let parsed = uri::parse(raw, &policy)?;
        if parsed.export_name.len() > proto::MAX_STRING_LEN {
            return Err(Error::new(
                libc::ENAMETOOLONG,
                "export name too long for NBD protocol",
            ));
        }
        let addr = match &parsed.target {
            Target::Unix { path } => Some(unix_addr(path)?),
            Target::Vsock { cid, port } => Some(SockAddr::vsock(*cid, *port)),
            Target::Tcp { .. } | Target::Ssh { .. } => None,
        };
        let ssh = match parsed.target.ssh_command() {
            Some(argv) => Some(c_strings(&argv)?),
            None => None,
        };
        super::tls::apply_uri_tls(c, &parsed.tls, parsed.username.as_deref());
        c.net.uri_username = parsed.username;
        c.settings.export_name = parsed.export_name;
        match (&parsed.target, addr, ssh) {
            (Target::Tcp { host, port }, _, _) => c.start_connect_tcp(host, port),
            (_, Some(addr), _) => {
                c.start_connect(addr);
                Ok(())
            }
            (target, None, Some(argv)) => {
                // What ssh prints is the reason when the tunnel fails.
                let (socket, child) = transport::spawn_command(&argv, None, true)
                    .map_err(|e| Error::io("connect_command", &e))?;
                c.net.ssh = Some(target.clone());
                c.subprocess = Some(child);
                c.start_handshake(Box::new(socket));
                Ok(())
            }
            (_, None, None) => unreachable!("every other target has an address"),
        }
    }

    /// A URI that would connect to the same server and export, where the
    /// handle knows enough to make one.
    ///
    /// libnbd: `nbd_get_uri`.
    pub fn get_uri(&self) -> Result<String> {
        let c = self.lock();
        c.check_state(URI_STATES)?;
        uri::build(&uri::Connection {
            hostname: c.net.hostname.as_deref(),
            port: c.net.port.as_deref(),
            connaddr: c.net.connaddr.as_ref(),
            ssh: c.net.ssh.as_ref(),
            export_name: &c.settings.export_name,
            // libnbd writes the TLS user name (which a URI's sets).
            username: c.tls.username.as_deref().map(str::as_bytes),
            tls: c.tls.mode == LIBNBD_TLS_REQUIRE || c.tls_negotiated(),
            tls_certificates: c.tls.certificates.as_deref().map(path_bytes),
            tls_psk_file: c.tls.psk_file.as_deref().map(path_bytes),
            tls_hostname: c.tls.hostname.as_deref().map(str::as_bytes),
            tls_verify_peer: c.tls.verify_peer,
        })
    }

    /// Whether `s` looks like an NBD URI (a quick test of its scheme; it
    /// does not promise that [`Handle::connect_uri`] will accept it).
    ///
    /// libnbd: `nbd_is_uri`.
    pub fn is_uri<U: AsRef<[u8]>>(&self, s: U) -> bool {
        uri::is_uri(s.as_ref())
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
        let mask = mask.bits();
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        if mask & !LIBNBD_ALLOW_TRANSPORT_MASK != 0 {
            return Err(Error::new(
                libc::EINVAL,
                format!("mask: invalid value for flag: 0x{mask:x}"),
            ));
        }
        c.net.uri_allow_transports = mask;
        Ok(())
    }

    /// The transports URIs may use (all by default).
    ///
    /// libnbd has only the setter, `nbd_set_uri_allow_transports`.
    pub fn uri_allow_transports(&self) -> AllowTransport {
        AllowTransport::from_bits_retain(self.lock().net.uri_allow_transports)
    }

    /// Whether URIs may, must, or must not ask for TLS (`LIBNBD_TLS_*`).
    ///
    /// libnbd: `nbd_set_uri_allow_tls`.
    pub fn set_uri_allow_tls(&self, tls: Tls) -> Result<()> {
        self.set_uri_allow_tls_c(tls as i32)
    }

    /// [`Handle::set_uri_allow_tls`] with a `LIBNBD_TLS_*` value, checked
    /// after the handle's state as libnbd does.
    pub(crate) fn set_uri_allow_tls_c(&self, tls: i32) -> Result<()> {
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        if !(LIBNBD_TLS_DISABLE..=LIBNBD_TLS_REQUIRE).contains(&tls) {
            return Err(Error::new(
                libc::EINVAL,
                format!("tls: invalid value for parameter: {tls}"),
            ));
        }
        c.net.uri_allow_tls = tls;
        Ok(())
    }

    /// The URI TLS setting (`LIBNBD_TLS_ALLOW` by default).
    ///
    /// libnbd has only the setter, `nbd_set_uri_allow_tls`.
    pub fn uri_allow_tls(&self) -> Tls {
        Tls::from_raw(self.lock().net.uri_allow_tls).unwrap_or_default()
    }

    /// Whether URIs may name local files (off by default).
    ///
    /// libnbd: `nbd_set_uri_allow_local_file`.
    pub fn set_uri_allow_local_file(&self, allow: bool) -> Result<()> {
        let mut c = self.lock();
        c.check_state(&[Perm::Created])?;
        c.net.uri_allow_local_file = allow;
        Ok(())
    }

    /// Whether URIs may name local files.
    ///
    /// libnbd has only the setter, `nbd_set_uri_allow_local_file`.
    pub fn uri_allow_local_file(&self) -> bool {
        self.lock().net.uri_allow_local_file
    }

    // ---- the subprocess ---------------------------------------------------------------

    /// The process id of the server started by [`Handle::connect_command`]
    /// or [`Handle::connect_systemd_socket_activation`]
    /// (`nbd_get_subprocess_pid`); `None` when there is no subprocess.
    pub fn subprocess_pid(&self) -> Option<i32> {
        self.lock().subprocess.as_ref().map(|child| child.pid())
    }

    /// Sends `signum` (SIGTERM when 0) to the server subprocess.
    ///
    /// libnbd: `nbd_kill_subprocess`.
    pub fn kill_subprocess(&self, signum: i32) -> Result<()> {
        let c = self.lock();
        let Some(child) = &c.subprocess else {
            return Err(Error::new(libc::ESRCH, "no subprocess exists"));
        };
        if signum < 0 {
            return Err(Error::new(
                libc::EINVAL,
                format!("invalid signal number: {signum}"),
            ));
        }
        let signum = if signum == 0 { libc::SIGTERM } else { signum };
        child.kill(signum).map_err(|e| Error::io("kill", &e))
    }
}
