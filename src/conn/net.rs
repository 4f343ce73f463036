//! Where and how the handle connects, as the handle layer asks for it:
//! the transport settings, NBD URIs (connecting to one, and making one),
//! servers run as subprocesses, and sockets the caller connected.

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Conn, Perm};
use crate::callback::Completion;
use crate::flags::raw::{LIBNBD_ALLOW_TRANSPORT_MASK, LIBNBD_TLS_DISABLE, LIBNBD_TLS_REQUIRE};
use crate::flags::IpFamily;
use crate::transport::{self, SockAddr, StderrTail};
use crate::uri::{self, Target};
use crate::{proto, Error, Result};

/// States in which only a new handle may change a setting.
const CREATED: &[Perm] = &[Perm::Created];

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

fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

/// The address of the Unix domain socket `path` (ENAMETOOLONG if it does
/// not fit), with libnbd's message.
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

/// `argv` as C strings: not empty, no NUL inside.
pub(crate) fn c_strings<S: AsRef<[u8]>>(argv: &[S]) -> Result<Vec<CString>> {
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

/// The address of a server, for
/// [`Handle::aio_connect`](crate::Handle::aio_connect): a socket address of
/// any family the library connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    /// An IPv4 or IPv6 address and port (TCP).
    Inet(SocketAddr),
    /// The path of a Unix domain socket. A path starting with a NUL byte
    /// names a socket in Linux's abstract namespace by the bytes after it.
    Unix(PathBuf),
    /// An `AF_VSOCK` address: the context id of a machine and a port.
    Vsock {
        /// The context id (`VMADDR_CID_*` or a guest's).
        cid: u32,
        /// The port.
        port: u32,
    },
}

impl From<SocketAddr> for ServerAddr {
    fn from(addr: SocketAddr) -> ServerAddr {
        ServerAddr::Inet(addr)
    }
}

impl ServerAddr {
    /// The kernel's form of the address (ENAMETOOLONG for a path too long).
    pub(crate) fn sockaddr(&self) -> Result<SockAddr> {
        Ok(match self {
            ServerAddr::Inet(addr) => SockAddr::inet(*addr),
            ServerAddr::Unix(path) => match path.as_os_str().as_bytes() {
                [0, name @ ..] => SockAddr::unix_abstract(name).map_err(|_| {
                    Error::new(
                        libc::ENAMETOOLONG,
                        "socket name too long for a Unix domain socket",
                    )
                })?,
                bytes => unix_addr(bytes)?,
            },
            ServerAddr::Vsock { cid, port } => SockAddr::vsock(*cid, *port),
        })
    }
}

impl Conn {
    // ---- settings -------------------------------------------------------------

    /// Which IP addresses a TCP connect tries.
    pub(crate) fn ip_family(&self) -> IpFamily {
        self.net.ip_family
    }

    /// Chooses which IP addresses a TCP connect tries, on a new handle.
    pub(crate) fn set_ip_family(&mut self, family: IpFamily) -> Result<()> {
        self.check_state(CREATED)?;
        self.net.ip_family = family;
        Ok(())
    }

    /// Whether a subprocess's stderr is captured.
    pub(crate) fn capture_stderr(&self) -> bool {
        self.net.capture_stderr
    }

    /// Captures (or not) a subprocess's stderr, on a new handle.
    pub(crate) fn set_capture_stderr(&mut self, capture: bool) -> Result<()> {
        self.check_state(CREATED)?;
        self.net.capture_stderr = capture;
        Ok(())
    }

    /// Whether closing the handle waits for the subprocess.
    pub(crate) fn close_waits_for_subprocess(&self) -> bool {
        !self.net.detach_subprocess
    }

    /// Makes closing the handle wait (or not) for the subprocess.
    pub(crate) fn set_close_waits_for_subprocess(&mut self, wait: bool) {
        self.net.detach_subprocess = !wait;
    }

    /// The socket activation name (`LISTEN_FDNAMES`), `""` for none.
    pub(crate) fn socket_activation_name(&self) -> &str {
        &self.net.socket_activation_name
    }

    /// Names the socket passed under socket activation, on a new handle:
    /// at most 32 ASCII letters and digits.
    pub(crate) fn set_socket_activation_name(&mut self, name: &[u8]) -> Result<()> {
        self.check_state(CREATED)?;
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
        self.net.socket_activation_name = String::from_utf8_lossy(name).into_owned();
        Ok(())
    }

    /// The `LIBNBD_ALLOW_TRANSPORT_*` mask URIs are held to.
    pub(crate) fn uri_allow_transports(&self) -> u32 {
        self.net.uri_allow_transports
    }

    /// Sets the transports URIs may use, on a new handle.
    pub(crate) fn set_uri_allow_transports(&mut self, mask: u32) -> Result<()> {
        self.check_state(CREATED)?;
        if mask & !LIBNBD_ALLOW_TRANSPORT_MASK != 0 {
            return Err(Error::new(
                libc::EINVAL,
                format!("mask: invalid value for flag: 0x{mask:x}"),
            ));
        }
        self.net.uri_allow_transports = mask;
        Ok(())
    }

    /// Whether URIs may, must or must not ask for TLS (`LIBNBD_TLS_*`).
    pub(crate) fn uri_allow_tls(&self) -> i32 {
        self.net.uri_allow_tls
    }

    /// Sets the URI TLS policy, on a new handle.
    pub(crate) fn set_uri_allow_tls(&mut self, tls: i32) -> Result<()> {
        self.check_state(CREATED)?;
        if !(LIBNBD_TLS_DISABLE..=LIBNBD_TLS_REQUIRE).contains(&tls) {
            return Err(Error::new(
                libc::EINVAL,
                format!("tls: invalid value for parameter: {tls}"),
            ));
        }
        self.net.uri_allow_tls = tls;
        Ok(())
    }

    /// Whether URIs may name local files.
    pub(crate) fn uri_allow_local_file(&self) -> bool {
        self.net.uri_allow_local_file
    }

    /// Lets URIs name local files (or not), on a new handle.
    pub(crate) fn set_uri_allow_local_file(&mut self, allow: bool) -> Result<()> {
        self.check_state(CREATED)?;
        self.net.uri_allow_local_file = allow;
        Ok(())
    }

    /// Sets the callback told when the connection is ready (or fails
    /// before), on a new handle.
    pub(crate) fn set_ready_callback(&mut self, callback: Completion) -> Result<()> {
        self.check_state(CREATED)?;
        self.on_ready = Some(callback);
        Ok(())
    }

    // ---- the subprocess ---------------------------------------------------------

    /// The server subprocess's process id, if there is one.
    pub(crate) fn subprocess_pid(&self) -> Option<i32> {
        self.subprocess.as_ref().map(|child| child.pid())
    }

    /// The captured end of the subprocess's stderr, if any.
    pub(crate) fn subprocess_stderr(&self) -> Option<StderrTail> {
        self.subprocess.as_ref()?.stderr().cloned()
    }

    /// Sends `signum` (SIGTERM when 0) to the server subprocess.
    pub(crate) fn kill_subprocess(&self, signum: i32) -> Result<()> {
        let Some(child) = &self.subprocess else {
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

    // ---- starting a connection -----------------------------------------------

    /// Starts connecting to `addr`.
    pub(crate) fn start_connect_to(&mut self, addr: &ServerAddr) -> Result<()> {
        let addr = addr.sockaddr()?;
        self.start_connect(addr);
        Ok(())
    }

    /// Starts the handshake over `sock`, a socket the caller connected.
    pub(crate) fn adopt_socket(&mut self, sock: OwnedFd) -> Result<()> {
        let socket =
            transport::Socket::new(sock).map_err(|e| Error::io("fcntl: set O_NONBLOCK", &e))?;
        self.start_handshake(Box::new(socket));
        Ok(())
    }

    /// Runs `args` as the server on its stdin/stdout (with `env` as its
    /// whole environment, if given) and starts the handshake with it.
    pub(crate) fn start_command(
        &mut self,
        args: &[CString],
        env: Option<&[CString]>,
    ) -> Result<()> {
        let (socket, child) = transport::spawn_command(args, env, self.net.capture_stderr)
            .map_err(|e| Error::io("connect_command", &e))?;
        self.subprocess = Some(child);
        self.start_handshake(Box::new(socket));
        Ok(())
    }

    /// Runs `cmd` as the server on its stdin/stdout and starts the
    /// handshake with it.
    pub(crate) fn start_process(&mut self, cmd: &mut std::process::Command) -> Result<()> {
        let (socket, child) = transport::spawn_process(cmd, self.net.capture_stderr)
            .map_err(|e| Error::io("connect_command", &e))?;
        self.subprocess = Some(child);
        self.start_handshake(Box::new(socket));
        Ok(())
    }

    /// Starts connecting to the server and export the NBD URI `raw`
    /// names, under the handle's URI policy; the URI's export name and
    /// TLS settings become the handle's.
    pub(crate) fn start_uri(&mut self, raw: &[u8]) -> Result<()> {
        let policy = uri::Policy {
            allow_transports: self.net.uri_allow_transports,
            allow_tls: self.net.uri_allow_tls,
            allow_local_file: self.net.uri_allow_local_file,
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
        self.apply_uri_tls(&parsed.tls, parsed.username.as_deref());
        self.net.uri_username = parsed.username;
        self.settings.export_name = parsed.export_name;
        match (&parsed.target, addr, ssh) {
            (Target::Tcp { host, port }, _, _) => self.start_connect_tcp(host, port),
            (_, Some(addr), _) => {
                self.start_connect(addr);
                Ok(())
            }
            (target, None, Some(argv)) => {
                // What ssh prints is the reason when the tunnel fails.
                let (socket, child) = transport::spawn_command(&argv, None, true)
                    .map_err(|e| Error::io("connect_command", &e))?;
                self.net.ssh = Some(target.clone());
                self.subprocess = Some(child);
                self.start_handshake(Box::new(socket));
                Ok(())
            }
            (_, None, None) => unreachable!("every other target has an address"),
        }
    }

    /// A URI that would connect to the same server and export, where the
    /// handle knows enough to make one.
    pub(crate) fn uri(&self) -> Result<String> {
        self.check_state(URI_STATES)?;
        let tls = &self.tls;
        uri::build(&uri::Connection {
            hostname: self.net.hostname.as_deref(),
            port: self.net.port.as_deref(),
            connaddr: self.net.connaddr.as_ref(),
            ssh: self.net.ssh.as_ref(),
            export_name: &self.settings.export_name,
            // libnbd writes the TLS user name (which a URI's sets).
            username: tls.username.as_deref().map(str::as_bytes),
            tls: tls.mode == LIBNBD_TLS_REQUIRE || self.tls_negotiated(),
            tls_certificates: tls.certificates.as_deref().map(path_bytes),
            tls_psk_file: tls.psk_file.as_deref().map(path_bytes),
            tls_hostname: tls.hostname.as_deref().map(str::as_bytes),
            tls_verify_peer: tls.verify_peer,
        })
    }
}
