//! Socket addresses, name resolution, and the system calls that open a
//! connection without blocking.

use std::ffi::{CStr, CString};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A socket address of any family, as the kernel takes it.
#[derive(Clone, Copy)]
pub(crate) struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl std::fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SockAddr(family {}, len {})", self.family(), self.len)
    }
}

fn empty_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

impl SockAddr {
    /// A Unix domain socket address for `path`.
    pub(crate) fn unix(path: &[u8]) -> io::Result<SockAddr> {
        let mut storage = empty_storage();
        // SAFETY: sockaddr_storage is large enough and suitably aligned
        // for any sockaddr, sockaddr_un included.
        let sun = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_un) };
        // Leave room for the terminating NUL, as the kernel expects.
        if path.len() >= sun.sun_path.len() {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, &src) in sun.sun_path.iter_mut().zip(path) {
            *dst = src as libc::c_char;
        }
        Ok(SockAddr {
            storage,
            len: std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        })
    }

    /// An `AF_VSOCK` address.
    pub(crate) fn vsock(cid: u32, port: u32) -> SockAddr {
        let mut storage = empty_storage();
        // SAFETY: sockaddr_storage is large enough for sockaddr_vm.
        let svm = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_vm) };
        svm.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        svm.svm_cid = cid;
        svm.svm_port = port;
        SockAddr {
            storage,
            len: std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        }
    }

    /// An IPv4 or IPv6 address.
    pub(crate) fn inet(addr: SocketAddr) -> SockAddr {
        let mut storage = empty_storage();
        let len = match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is large enough for sockaddr_in.
                let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_storage is large enough for sockaddr_in6.
                let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        SockAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    /// Copies a caller's `struct sockaddr`.
    ///
    /// # Safety
    /// `addr` must be valid for reads of `len` bytes.
    pub(crate) unsafe fn from_raw(
        addr: *const libc::sockaddr,
        len: libc::socklen_t,
    ) -> io::Result<SockAddr> {
        let mut storage = empty_storage();
        let max = std::mem::size_of::<libc::sockaddr_storage>();
        if (len as usize) > max || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: the caller promises len readable bytes; storage holds max >= len.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr as *const u8,
                &mut storage as *mut _ as *mut u8,
                len as usize,
            )
        };
        Ok(SockAddr { storage, len })
    }

    /// Binds `fd` to this address; returns bind(2)'s result.
    pub(crate) fn bind(&self, fd: RawFd) -> i32 {
        // SAFETY: the address points to len valid bytes.
        unsafe { libc::bind(fd, self.as_ptr(), self.len) }
    }

    /// The address family (`AF_*`).
    pub(crate) fn family(&self) -> i32 {
        self.storage.ss_family as i32
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }

    /// The socket path of a Unix address: `Some(Err(()))` for an address
    /// in the abstract namespace, `None` for another family.
    pub(crate) fn unix_path(&self) -> Option<Result<&[u8], ()>> {
        if self.family() != libc::AF_UNIX {
            return None;
        }
        // SAFETY: the family says this is a sockaddr_un.
        let sun = unsafe { &*(self.as_ptr() as *const libc::sockaddr_un) };
        let offset = std::mem::size_of::<libc::sa_family_t>();
        let avail = (self.len as usize)
            .saturating_sub(offset)
            .min(sun.sun_path.len());
        // SAFETY: c_char and u8 have the same size and layout.
        let bytes: &[u8] =
            unsafe { std::slice::from_raw_parts(sun.sun_path.as_ptr() as *const u8, avail) };
        if matches!(bytes.first(), None | Some(0)) {
            return Some(Err(()));
        }
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Some(Ok(&bytes[..end]))
    }

    /// The IP address and port of an `AF_INET`/`AF_INET6` address.
    pub(crate) fn inet_addr(&self) -> Option<SocketAddr> {
        match self.family() {
            libc::AF_INET => {
                // SAFETY: the family says this is a sockaddr_in.
                let sin = unsafe { &*(self.as_ptr() as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says this is a sockaddr_in6.
                let sin6 = unsafe { &*(self.as_ptr() as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
            }
            _ => None,
        }
    }

    /// The CID and port of an `AF_VSOCK` address.
    pub(crate) fn vsock_addr(&self) -> Option<(u32, u32)> {
        if self.family() != libc::AF_VSOCK {
            return None;
        }
        // SAFETY: the family says this is a sockaddr_vm.
        let svm = unsafe { &*(self.as_ptr() as *const libc::sockaddr_vm) };
        Some((svm.svm_cid, svm.svm_port))
    }
}

/// Resolves `host` and `port` (a number or a service name) to stream
/// socket addresses, in the order getaddrinfo gives them. The error is
/// getaddrinfo's own text.
pub(crate) fn resolve(host: &str, port: &str) -> Result<Vec<SockAddr>, String> {
    let (Ok(c_host), Ok(c_port)) = (CString::new(host), CString::new(port)) else {
        return Err(crate::strerror(libc::EINVAL));
    };
    // SAFETY: addrinfo is plain data; all-zero is the empty hint.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut result: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C strings and hints; result receives a list we free below.
    let rc = unsafe { libc::getaddrinfo(c_host.as_ptr(), c_port.as_ptr(), &hints, &mut result) };
    if rc != 0 {
        let text = if rc == libc::EAI_SYSTEM {
            io::Error::last_os_error().to_string()
        } else {
            // SAFETY: gai_strerror returns a static NUL-terminated string.
            unsafe { CStr::from_ptr(libc::gai_strerror(rc)) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(text);
    }
    let mut out = Vec::new();
    let mut p = result;
    while !p.is_null() {
        // SAFETY: p is a node of the list getaddrinfo returned.
        let ai = unsafe { &*p };
        if !ai.ai_addr.is_null() {
            // SAFETY: ai_addr points to ai_addrlen bytes.
            if let Ok(a) = unsafe { SockAddr::from_raw(ai.ai_addr, ai.ai_addrlen) } {
                out.push(a);
            }
        }
        p = ai.ai_next;
    }
    // SAFETY: result came from getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(result) };
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
    // SAFETY: plain syscall.
    let fd = unsafe {
        libc::socket(
            addr.family(),
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err((Stage::Socket, io::Error::last_os_error()));
    }
    // SAFETY: socket returned a new fd that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if matches!(addr.family(), libc::AF_INET | libc::AF_INET6) {
        // Requests are small and latency matters: no Nagle. Failure is harmless.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads one c_int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    if addr.family() == libc::AF_UNIX {
        super::enlarge_unix_send_buffer(fd.as_raw_fd());
    }
    loop {
        // SAFETY: addr points to len valid bytes.
        let rc = unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr(), addr.len) };
        if rc == 0 {
            return Ok(Started::Connected(fd));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EINPROGRESS) => return Ok(Started::InProgress(fd)),
            _ => return Err((Stage::Connect, err)),
        }
    }
}

/// Whether a connect started on `fd` has finished: `None` while it is
/// still in progress, else `Some(errno)`, 0 meaning success.
pub(crate) fn connect_result(fd: RawFd) -> io::Result<Option<i32>> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(None);
        }
        return Err(err);
    }
    if rc == 0 {
        return Ok(None);
    }
    let mut status: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most len bytes into status.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut status as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(status))
}
