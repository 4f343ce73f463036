//! Socket addresses, name resolution, and the system calls that open a
//! connection without blocking (through nix; getaddrinfo, which nix does
//! not have, through libc).

use std::ffi::{CStr, CString};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, sockopt, AddressFamily, SockFlag, SockType, SockaddrLike, SockaddrStorage, UnixAddr,
    VsockAddr,
};

/// A socket address of any family, as the kernel takes it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SockAddr {
    Unix(UnixAddr),
    Vsock(VsockAddr),
    /// An IP address, with its family (`AF_*`).
    Any(SockaddrStorage, i32),
}

impl SockAddr {
    /// A Unix domain socket address for `path` (ENAMETOOLONG if it does
    /// not fit).
    pub(crate) fn unix(path: &[u8]) -> io::Result<SockAddr> {
        // nix leaves no room for a terminating NUL; the kernel wants one.
        if path.len() >= std::mem::size_of::<libc::sockaddr_un>() - 2 {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        Ok(SockAddr::Unix(UnixAddr::new(path)?))
    }

    /// A Unix domain socket address in Linux's abstract namespace, named
    /// by the bytes of `name` (ENAMETOOLONG if they do not fit).
    pub(crate) fn unix_abstract(name: &[u8]) -> io::Result<SockAddr> {
        Ok(SockAddr::Unix(UnixAddr::new_abstract(name)?))
    }

    /// An `AF_VSOCK` address.
    pub(crate) fn vsock(cid: u32, port: u32) -> SockAddr {
        SockAddr::Vsock(VsockAddr::new(cid, port))
    }

    /// An IPv4 or IPv6 address.
    pub(crate) fn inet(addr: SocketAddr) -> SockAddr {
        let family = match addr {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        SockAddr::Any(SockaddrStorage::from(addr), family)
    }

    fn like(&self) -> &dyn SockaddrLike {
        match self {
            SockAddr::Unix(a) => a,
            SockAddr::Vsock(a) => a,
            SockAddr::Any(a, _) => a,
        }
    }

    /// Binds `fd` to this address.
    pub(crate) fn bind(&self, fd: RawFd) -> io::Result<()> {
        Ok(socket::bind(fd, self.like())?)
    }

    /// The address family (`AF_*`), as the caller gave it.
    pub(crate) fn family(&self) -> i32 {
        match self {
            SockAddr::Unix(_) => libc::AF_UNIX,
            SockAddr::Vsock(_) => libc::AF_VSOCK,
            SockAddr::Any(_, family) => *family,
        }
    }

    /// The socket path of a Unix address: `Some(Err(()))` for an address
    /// in the abstract namespace (or none), `None` for another family.
    pub(crate) fn unix_path(&self) -> Option<Result<&[u8], ()>> {
        let unix = match self {
            SockAddr::Unix(a) => a,
            SockAddr::Any(a, _) => a.as_unix_addr()?,
            SockAddr::Vsock(_) => return None,
        };
        use std::os::unix::ffi::OsStrExt;
        Some(unix.path().map(|p| p.as_os_str().as_bytes()).ok_or(()))
    }

    /// The IP address and port of an `AF_INET`/`AF_INET6` address.
    pub(crate) fn inet_addr(&self) -> Option<SocketAddr> {
        let SockAddr::Any(a, _) = self else {
            return None;
        };
        if let Some(sin) = a.as_sockaddr_in() {
            return Some(SocketAddr::new(sin.ip().into(), sin.port()));
        }
        a.as_sockaddr_in6()
            .map(|sin6| SocketAddr::new(sin6.ip().into(), sin6.port()))
    }

    /// The CID and port of an `AF_VSOCK` address.
    pub(crate) fn vsock_addr(&self) -> Option<(u32, u32)> {
        let vsock = match self {
            SockAddr::Vsock(a) => a,
            SockAddr::Any(a, _) => a.as_vsock_addr()?,
            SockAddr::Unix(_) => return None,
        };
        Some((vsock.cid(), vsock.port()))
    }
}

/// Resolves `host` and `port` (a number or a service name) to stream
/// socket addresses of `family` (`AF_UNSPEC`, `AF_INET` or `AF_INET6`), in
/// the order getaddrinfo gives them. The error is getaddrinfo's own text.
pub(crate) fn resolve(host: &str, port: &str, family: i32) -> Result<Vec<SockAddr>, String> {
    let (Ok(c_host), Ok(c_port)) = (CString::new(host), CString::new(port)) else {
        return Err(crate::strerror(libc::EINVAL));
    };
    let hints = libc::addrinfo {
        ai_flags: 0,
        ai_family: family,
        ai_socktype: libc::SOCK_STREAM,
        ai_protocol: 0,
        ai_addrlen: 0,
        ai_addr: std::ptr::null_mut(),
        ai_canonname: std::ptr::null_mut(),
        ai_next: std::ptr::null_mut(),
    };
    let mut out = Vec::new();
    // SAFETY: getaddrinfo gets valid C strings and hints. If it fails,
    // gai_strerror returns a static NUL-terminated string. If it succeeds,
    // result is a list whose every node, and its ai_addr (when not NULL,
    // nix checks) with ai_addrlen bytes, stays valid until the
    // freeaddrinfo at the end, which frees the list once; the addresses
    // are copied out before that.
    unsafe {
        let mut result: *mut libc::addrinfo = std::ptr::null_mut();
        let rc = libc::getaddrinfo(c_host.as_ptr(), c_port.as_ptr(), &hints, &mut result);
        if rc == libc::EAI_SYSTEM {
            return Err(io::Error::last_os_error().to_string());
        }
        if rc != 0 {
            let text = CStr::from_ptr(libc::gai_strerror(rc));
            return Err(text.to_string_lossy().into_owned());
        }
        let mut p = result;
        while let Some(ai) = p.as_ref() {
            let addr = SockaddrStorage::from_raw(ai.ai_addr, Some(ai.ai_addrlen));
            out.extend(addr.map(|a| SockAddr::Any(a, ai.ai_family)));
            p = ai.ai_next;
        }
        libc::freeaddrinfo(result);
    }
    Ok(out)
}

/// A connect(2) that was started without blocking.
pub(crate) enum Started {
    /// Connected at once.
    Connected(OwnedFd),
    /// Still connecting: wait for the fd to become writable.
    InProgress(OwnedFd),
}

/// Which system call failed while starting a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Socket,
    Connect,
}

/// Opens a non-blocking socket for `addr`'s family and starts connecting.
pub(crate) fn start_connect(addr: &SockAddr) -> Result<Started, (Stage, io::Error)> {
    let family = AddressFamily::from_i32(addr.family())
        .ok_or((Stage::Socket, io::Error::from(Errno::EAFNOSUPPORT)))?;
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| (Stage::Socket, e.into()))?;
    if matches!(family, AddressFamily::Inet | AddressFamily::Inet6) {
        // Requests are small and latency matters: no Nagle. Failure is harmless.
        let _ = socket::setsockopt(&fd, sockopt::TcpNoDelay, &true);
    }
    if family == AddressFamily::Unix {
        super::enlarge_unix_send_buffer(&fd);
    }
    loop {
        match socket::connect(fd.as_raw_fd(), addr.like()) {
            Ok(()) => return Ok(Started::Connected(fd)),
            Err(Errno::EINTR) => continue,
            Err(Errno::EINPROGRESS) => return Ok(Started::InProgress(fd)),
            Err(e) => return Err((Stage::Connect, e.into())),
        }
    }
}

/// Whether a connect started on `fd` has finished: `None` while it is
/// still in progress, else `Some(errno)`, 0 meaning success.
pub(crate) fn connect_result(fd: &OwnedFd) -> io::Result<Option<i32>> {
    let mut pfd = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    match nix::poll::poll(&mut pfd, PollTimeout::ZERO) {
        Ok(0) | Err(Errno::EINTR) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Some(socket::getsockopt(fd, sockopt::SocketError)?))
}
