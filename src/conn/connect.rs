//! The connect phase: a non-blocking connect(2) before the handshake.
//!
//! TCP tries every address getaddrinfo returned, in order, until one
//! connects; the other transports have one address. While a connect is in
//! progress the machine waits for the socket to become writable, then reads
//! `SO_ERROR` to learn how it went.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{Conn, Phase};
use crate::flags::raw::{LIBNBD_ALLOW_TRANSPORT_MASK, LIBNBD_TLS_ALLOW};
use crate::flags::IpFamily;
use crate::transport::{self, SockAddr, SocketDir, Stage, Started};
use crate::{Error, Result};

/// How and where the handle connects, and the URI policy settings.
#[derive(Debug)]
pub(crate) struct Net {
    /// `LIBNBD_ALLOW_TRANSPORT_*` mask for URIs.
    pub(super) uri_allow_transports: u32,
    /// `LIBNBD_TLS_*`: which URI schemes (nbd or nbds) are allowed.
    pub(super) uri_allow_tls: i32,
    /// Whether URIs may name local files.
    pub(super) uri_allow_local_file: bool,
    /// `LISTEN_FDNAMES` for socket activation; empty for none.
    pub(super) socket_activation_name: String,
    /// The user name a URI gave (`nbd://user@host/`), kept for `get_uri`.
    pub(super) uri_username: Option<Vec<u8>>,
    /// Host and port as `connect_tcp` was given them.
    pub(super) hostname: Option<String>,
    pub(super) port: Option<String>,
    /// The address connected to (or being connected to) for the other
    /// transports.
    pub(super) connaddr: Option<SockAddr>,
    /// The directory of a socket-activation listening socket.
    pub(super) socket_dir: Option<SocketDir>,
    /// Which addresses a TCP connect tries (beyond libnbd).
    pub(super) ip_family: IpFamily,
    /// Capture a subprocess's stderr (beyond libnbd; always for ssh).
    pub(super) capture_stderr: bool,
    /// Closing the handle reaps the subprocess on a thread of its own
    /// instead of waiting for it (beyond libnbd).
    pub(super) detach_subprocess: bool,
    /// The Secure Shell tunnel (a [`crate::uri::Target::Ssh`]) an
    /// `nbd+ssh` URI named, kept for `get_uri`.
    pub(super) ssh: Option<crate::uri::Target>,

    /// Addresses still to try, and which is being tried.
    addrs: Vec<SockAddr>,
    next: usize,
    /// TCP: failing over between addresses, and back to "created" if all fail.
    tcp: bool,
    /// The first connect error among the addresses tried.
    first_errno: i32,
    /// The socket whose connect is in progress.
    pending: Option<OwnedFd>,
}

impl Default for Net {
    fn default() -> Net {
        Net {
            uri_allow_transports: LIBNBD_ALLOW_TRANSPORT_MASK,
            uri_allow_tls: LIBNBD_TLS_ALLOW,
            uri_allow_local_file: false,
            socket_activation_name: String::new(),
            uri_username: None,
            hostname: None,
            port: None,
            connaddr: None,
            socket_dir: None,
            ip_family: IpFamily::Any,
            capture_stderr: false,
            detach_subprocess: false,
            ssh: None,
            addrs: Vec::new(),
            next: 0,
            tcp: false,
            first_errno: 0,
            pending: None,
        }
    }
}

impl Net {
    /// The fd whose connect is in progress.
    pub(crate) fn pending_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pending.as_ref().map(|fd| fd.as_fd())
    }
}

impl Conn {
    /// Starts connecting to one address (Unix, vsock, or a caller's sockaddr).
    pub(crate) fn start_connect(&mut self, addr: SockAddr) {
        self.net.connaddr = Some(addr);
        self.net.addrs = vec![addr];
        self.net.next = 0;
        self.net.tcp = false;
        self.phase = Phase::Connecting;
    }

    /// Resolves `host` and `port` and starts connecting to the first
    /// address. Resolution blocks, as it does in libnbd.
    pub(crate) fn start_connect_tcp(&mut self, host: &str, port: &str) -> Result<()> {
        self.net.hostname = Some(host.to_string());
        self.net.port = Some(port.to_string());
        let family = match self.net.ip_family {
            IpFamily::Any => libc::AF_UNSPEC,
            IpFamily::V4 => libc::AF_INET,
            IpFamily::V6 => libc::AF_INET6,
        };
        let addrs = transport::resolve(host, port, family).map_err(|why| {
            Error::new(
                0,
                format!("getaddrinfo: hostname \"{host}\" port \"{port}\": {why}"),
            )
        })?;
        self.start_connect_list(addrs);
        Ok(())
    }

    /// Starts connecting to the first of `addrs`, failing over to the next.
    fn start_connect_list(&mut self, addrs: Vec<SockAddr>) {
        self.net.addrs = addrs;
        self.net.next = 0;
        self.net.tcp = true;
        self.net.first_errno = 0;
        self.phase = Phase::Connecting;
    }

    /// Starts `argv` under systemd socket activation and starts connecting
    /// to its socket.
    pub(crate) fn start_socket_activation(&mut self, argv: &[CString]) -> Result<()> {
        let (child, dir, addr) =
            match transport::spawn_socket_activation(argv, &self.net.socket_activation_name) {
                Ok(parts) => parts,
                Err(e) => return Err(self.die(e)),
            };
        self.subprocess = Some(child);
        self.net.socket_dir = Some(dir);
        self.start_connect(addr);
        Ok(())
    }

    /// `"NAME: description"` of the connect phase.
    pub(super) fn connect_state_description(&self) -> &'static str {
        if self.net.tcp {
            "CONNECT_TCP.CONNECTING: Connecting to the remote server"
        } else {
            "CONNECT.CONNECTING: Connecting to the remote server"
        }
    }

    /// Advances the connect phase as far as it goes without blocking: on
    /// success the handshake starts. A failed TCP connect (every address
    /// refused) returns the handle to "created", as libnbd does; other
    /// failures kill it.
    pub(super) fn connect_progress(&mut self) -> Result<()> {
        loop {
            if let Some(fd) = self.net.pending.as_ref() {
                let status = match transport::connect_result(fd) {
                    Ok(None) => return Ok(()),
                    Ok(Some(status)) => status,
                    Err(e) => {
                        self.net.pending = None;
                        return Err(self.die(Error::io("getsockopt: SO_ERROR", &e)));
                    }
                };
                let sock = self.net.pending.take().expect("pending connect");
                if status == 0 {
                    return self.connected(sock);
                }
                drop(sock);
                self.connect_failed(status)?;
                continue;
            }
            let Some(addr) = self.net.addrs.get(self.net.next).copied() else {
                return Err(self.all_addresses_failed());
            };
            match transport::start_connect(&addr) {
                Ok(Started::Connected(sock)) => return self.connected(sock),
                Ok(Started::InProgress(sock)) => {
                    // Check at once: on loopback a refusal is already known.
                    self.net.pending = Some(sock);
                }
                Err((Stage::Socket, e)) => {
                    if self.net.tcp {
                        // As libnbd: a socket we cannot make is skipped
                        // without becoming the error reported.
                        self.net.next += 1;
                        continue;
                    }
                    return Err(self.die(Error::io("socket", &e)));
                }
                Err((Stage::Connect, e)) => {
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    if errno == libc::EAGAIN && addr.family() == libc::AF_UNIX {
                        return Err(self.die(Error::new(
                            errno,
                            "connect: server backlog overflowed, \
                             see https://bugzilla.redhat.com/1925045",
                        )));
                    }
                    self.connect_failed(errno)?;
                }
            }
        }
    }

    /// One address failed with `errno`: TCP moves to the next, the others die.
    fn connect_failed(&mut self, errno: i32) -> Result<()> {
        if !self.net.tcp {
            return Err(self.die(Error::new(errno, "connect")));
        }
        if self.net.first_errno == 0 {
            self.net.first_errno = errno;
        }
        self.net.next += 1;
        Ok(())
    }

    /// Every TCP address failed: back to "created", reporting the first error.
    fn all_addresses_failed(&mut self) -> Error {
        self.phase = Phase::Created;
        self.net.addrs.clear();
        self.net.next = 0;
        Error::new(
            self.net.first_errno,
            format!(
                "connect: {}:{}: could not connect to remote host",
                self.net.hostname.as_deref().unwrap_or(""),
                self.net.port.as_deref().unwrap_or("")
            ),
        )
    }

    fn connected(&mut self, sock: OwnedFd) -> Result<()> {
        if let Some(addr) = self.net.addrs.get(self.net.next).copied() {
            self.net.connaddr = Some(addr);
        }
        self.net.addrs.clear();
        self.net.next = 0;
        // `start_connect` made the socket non-blocking.
        let socket = transport::Socket::from_nonblocking(sock);
        self.start_handshake(Box::new(socket));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags};
    use std::net::{Ipv4Addr, SocketAddr, TcpListener};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn free_port() -> u16 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    }

    fn addr(port: u16) -> SockAddr {
        SockAddr::inet(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Drives the machine until it stops connecting.
    fn drive(c: &mut Conn) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            c.progress()?;
            if !c.is_connecting() {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "connect did not finish");
            let events = if c.direction() & super::super::DIRECTION_WRITE != 0 {
                PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            let fd = c.borrow_fd().expect("fd while connecting");
            let _ = poll(&mut [PollFd::new(fd, events)], 1000u16);
        }
    }

    #[test]
    fn every_address_refused() {
        let (p1, p2) = (free_port(), free_port());
        let mut c = Conn::new();
        c.net.hostname = Some("test".into());
        c.net.port = Some("1".into());
        c.start_connect_list(vec![addr(p1), addr(p2)]);
        let e = drive(&mut c).unwrap_err();
        assert_eq!(e.errno(), libc::ECONNREFUSED);
        assert_eq!(
            e.message(),
            "connect: test:1: could not connect to remote host"
        );
        assert!(c.is_created());
    }

    /// The server listens on the last address only: the refusals before
    /// it are passed over.
    #[test]
    fn fails_over_to_the_next_address() {
        let have_nbdkit = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nbdkit").is_file()));
        if !have_nbdkit {
            eprintln!("SKIP fails_over_to_the_next_address: nbdkit is not installed");
            return;
        }
        let dir = std::env::temp_dir().join(format!("rust-libnbd-failover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let good = free_port();
        let mut server = Command::new("nbdkit")
            .args(["-f", "--exit-with-parent", "-i", "127.0.0.1", "-p"])
            .arg(good.to_string())
            .arg("-P")
            .arg(&pidfile)
            .args(["memory", "1M"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n')) {
            assert!(Instant::now() < deadline, "nbdkit did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut addrs = vec![addr(free_port())];
        // An IPv6 address too, where the machine has IPv6: nothing listens there.
        if let Ok(l) = TcpListener::bind("[::1]:0") {
            let port = l.local_addr().unwrap().port();
            drop(l);
            addrs.push(SockAddr::inet(SocketAddr::from((
                std::net::Ipv6Addr::LOCALHOST,
                port,
            ))));
        }
        addrs.push(addr(good));
        let mut c = Conn::new();
        c.net.hostname = Some("localhost".into());
        c.net.port = Some(good.to_string());
        c.start_connect_list(addrs);
        let r = drive(&mut c);
        let _ = server.kill();
        let _ = server.wait();
        let _ = std::fs::remove_dir_all(&dir);
        r.expect("connect after failing over");
        assert_eq!(
            c.net.connaddr.and_then(|a| a.inet_addr()),
            Some(SocketAddr::from((Ipv4Addr::LOCALHOST, good)))
        );
        assert!(c.is_ready());
    }
}
