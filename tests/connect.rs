//! Every way to connect, against real servers: nbdkit over a Unix socket,
//! TCP on IPv4 and IPv6, and under socket activation; qemu-nbd under socket
//! activation; nbd-server with several named exports; a socket the test
//! connected itself; NBD URIs and their round trip through `get_uri`; and
//! each kind of bad input with the errno and message libnbd gives.
//!
//! A test whose server program is not installed prints why and passes.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{have, Daemon, Server, TempDir};
use nbd::{AllowTransport, Handle, Tls};

// ---- helpers ---------------------------------------------------------------

/// Waits until `ready` holds, failing the test after 20 seconds.
fn wait_for(what: &str, server: &mut Server, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("{what}: server exited early: {status}");
        }
        assert!(Instant::now() < deadline, "{what}: server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts nbdkit in the foreground with `args`, and waits for its pid
/// file, which it writes once it is listening.
fn nbdkit(dir: &TempDir, args: &[&str]) -> Server {
    let pidfile = dir.path("nbdkit.pid");
    let child = Command::new("nbdkit")
        .args(["-f", "--exit-with-parent", "-P"])
        .arg(&pidfile)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("start nbdkit");
    let mut server = Server { child };
    wait_for("nbdkit", &mut server, || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    });
    server
}

/// A TCP port that was free a moment ago on `ip`.
fn free_port(ip: std::net::IpAddr) -> Option<u16> {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .ok()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
}

/// Writes a pattern through the handle and reads it back.
fn round_trip(h: &Handle, offset: u64) {
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    h.pwrite(&data, offset, nbd::CmdFlag::empty())
        .expect("pwrite");
    let mut back = vec![0u8; data.len()];
    h.pread(&mut back, offset, nbd::CmdFlag::empty())
        .expect("pread");
    assert_eq!(back, data, "data read back differs");
}

fn socket_uri(sock: &Path) -> String {
    format!("nbd+unix:///?socket={}", sock.display())
}

/// Asserts `r` failed with `errno` and exactly `message`.
#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: nbd::Result<T>, errno: i32, message: &str) {
    let e = r.expect_err(message);
    assert_eq!(e.message(), message);
    assert_eq!(e.errno(), errno, "errno of {message:?}");
}

fn is_gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    unsafe { libc::kill(pid, 0) != 0 }
}

// ---- Unix sockets -------------------------------------------------------------

#[test]
fn unix_socket_nbdkit() {
    if !have("nbdkit", "unix_socket_nbdkit") {
        return;
    }
    let dir = TempDir::new("unix");
    let sock = dir.path("sock");
    let _server = nbdkit(&dir, &["-U", sock.to_str().unwrap(), "memory", "1M"]);

    let h = Handle::new().unwrap();
    h.connect_unix(&sock).expect("connect_unix");
    assert!(h.aio_is_ready());
    assert_eq!(h.size().unwrap(), 1 << 20);
    round_trip(&h, 8192);
    assert_eq!(h.get_uri().unwrap(), socket_uri(&sock));
    drop(h);

    // The same server through a URI, with an export name to round-trip.
    let h = Handle::new().unwrap();
    let uri = format!("nbd+unix:///my%20export?socket={}", sock.display());
    h.connect_uri(&uri).expect("connect_uri");
    assert_eq!(h.export_name(), b"my export");
    assert_eq!(h.get_uri().unwrap(), uri);
    round_trip(&h, 0);
}

/// SO_SNDBUF of a socket, in bytes (as the kernel reports it: doubled).
fn send_buffer(fd: std::os::fd::RawFd) -> i32 {
    let mut size: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one c_int and its length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &mut size as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
    size
}

/// Unix sockets the library creates get a larger send buffer than the
/// kernel's default, so large writes and (for connect_command) large read
/// replies are not cut into pieces; a Unix stream socket's bytes in flight
/// are limited by the sender's buffer only.
#[test]
fn unix_send_buffers_are_enlarged() {
    let (a, _b) = UnixStream::pair().unwrap();
    let default = send_buffer(std::os::fd::AsRawFd::as_raw_fd(&a));

    if have("nbdkit", "unix_send_buffers_are_enlarged") {
        let dir = TempDir::new("sndbuf");
        let sock = dir.path("sock");
        let _server = nbdkit(&dir, &["-U", sock.to_str().unwrap(), "memory", "1M"]);
        let h = Handle::new().unwrap();
        h.connect_unix(&sock).expect("connect_unix");
        let ours = send_buffer(h.aio_get_fd().unwrap());
        assert!(
            ours > default,
            "connect_unix: SO_SNDBUF {ours}, default {default}"
        );
    }

    // connect_command: the end the child serves on, checked by the child.
    if have("perl", "unix_send_buffers_are_enlarged (command)") {
        let dir = TempDir::new("sndbuf-cmd");
        let out = dir.path("child-sndbuf");
        let script = format!(
            "use Socket; open(my $s, '<&=0') or die; \
             my $v = getsockopt($s, SOL_SOCKET, SO_SNDBUF) or die $!; \
             open(my $f, '>', '{}') or die; print $f unpack('i', $v);",
            out.display()
        );
        let h = Handle::new().unwrap();
        // The child is no NBD server: the handshake fails once it exits.
        assert!(h.connect_command(&["perl", "-e", &script]).is_err());
        let child: i32 = std::fs::read_to_string(&out)
            .expect("the child wrote its SO_SNDBUF")
            .parse()
            .unwrap();
        assert!(
            child > default,
            "child's SO_SNDBUF {child}, default {default}"
        );
    }
}

#[test]
fn aio_connect_uri_and_poll() {
    if !have("nbdkit", "aio_connect_uri_and_poll") {
        return;
    }
    let dir = TempDir::new("aio");
    let sock = dir.path("sock");
    let _server = nbdkit(&dir, &["-U", sock.to_str().unwrap(), "memory", "1M"]);

    let h = Handle::new().unwrap();
    h.aio_connect_uri(socket_uri(&sock))
        .expect("aio_connect_uri");
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.aio_is_connecting() {
        assert!(Instant::now() < deadline, "handshake did not finish");
        h.poll(1000).expect("poll");
    }
    assert!(h.aio_is_ready(), "state: {}", h.connection_state());
    round_trip(&h, 0);
}

#[test]
fn connect_socket_connected_by_the_test() {
    if !have("nbdkit", "connect_socket_connected_by_the_test") {
        return;
    }
    let dir = TempDir::new("socket");
    let sock = dir.path("sock");
    let _server = nbdkit(&dir, &["-U", sock.to_str().unwrap(), "memory", "1M"]);

    let stream = UnixStream::connect(&sock).expect("connect to nbdkit");
    let h = Handle::new().unwrap();
    h.connect_socket(OwnedFd::from(stream))
        .expect("connect_socket");
    round_trip(&h, 4096);
    // A socket we were handed says nothing about where it leads.
    assert_err(
        h.get_uri(),
        libc::EINVAL,
        "cannot construct a URI for this connection type",
    );
}

// ---- TCP ------------------------------------------------------------------------

#[test]
fn tcp_ipv4_nbdkit() {
    if !have("nbdkit", "tcp_ipv4_nbdkit") {
        return;
    }
    let dir = TempDir::new("tcp4");
    let port = free_port(Ipv4Addr::LOCALHOST.into()).expect("a free IPv4 port");
    let port_s = port.to_string();
    let _server = nbdkit(&dir, &["-p", &port_s, "-i", "127.0.0.1", "memory", "1M"]);

    let h = Handle::new().unwrap();
    h.connect_tcp("127.0.0.1", &port_s).expect("connect_tcp");
    round_trip(&h, 0);
    assert_eq!(h.get_uri().unwrap(), format!("nbd://127.0.0.1:{port}/"));
    drop(h);

    let h = Handle::new().unwrap();
    let uri = format!("nbd://127.0.0.1:{port}/some/export");
    h.connect_uri(&uri).expect("connect_uri");
    assert_eq!(h.export_name(), b"some/export");
    assert_eq!(h.get_uri().unwrap(), uri);
    drop(h);

    // aio_connect with a socket address, driven by polling.
    let h = Handle::new().unwrap();
    h.aio_connect(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port))
        .expect("aio_connect");
    while h.aio_is_connecting() {
        h.poll(1000).expect("poll");
    }
    assert!(h.aio_is_ready());
    assert_eq!(h.get_uri().unwrap(), format!("nbd://127.0.0.1:{port}/"));
}

#[test]
fn tcp_ipv6_nbdkit() {
    if !have("nbdkit", "tcp_ipv6_nbdkit") {
        return;
    }
    let Some(port) = free_port(Ipv6Addr::LOCALHOST.into()) else {
        eprintln!("SKIP tcp_ipv6_nbdkit: this machine has no IPv6 loopback (cannot bind [::1])");
        return;
    };
    let dir = TempDir::new("tcp6");
    let port_s = port.to_string();
    let _server = nbdkit(&dir, &["-p", &port_s, "-i", "::1", "memory", "1M"]);

    let h = Handle::new().unwrap();
    h.connect_tcp("::1", &port_s).expect("connect_tcp ::1");
    round_trip(&h, 0);
    assert_eq!(h.get_uri().unwrap(), format!("nbd://[::1]:{port}/"));
    drop(h);

    let h = Handle::new().unwrap();
    let uri = format!("nbd://[::1]:{port}/x");
    h.connect_uri(&uri).expect("connect_uri [::1]");
    assert_eq!(h.get_uri().unwrap(), uri);
    round_trip(&h, 512);
}

/// `localhost` usually resolves to both ::1 and 127.0.0.1: with the server
/// on only the last address, connect_tcp must get there past the refusal.
/// (Where localhost has one address, the crate's own unit test in
/// `conn/connect.rs` covers trying several.)
#[test]
fn tcp_tries_every_address() {
    if !have("nbdkit", "tcp_tries_every_address") {
        return;
    }
    let port = free_port(Ipv4Addr::LOCALHOST.into()).expect("a free port");
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", port))
        .map(|a| a.collect())
        .unwrap_or_default();
    let Some(last) = addrs.last().copied() else {
        panic!("localhost does not resolve");
    };
    if addrs.len() < 2 {
        eprintln!(
            "note tcp_tries_every_address: localhost has one address here ({last}); \
             connecting to it alone"
        );
    }
    let dir = TempDir::new("multi");
    let port_s = port.to_string();
    let ip = last.ip().to_string();
    let _server = nbdkit(&dir, &["-p", &port_s, "-i", &ip, "memory", "1M"]);
    let h = Handle::new().unwrap();
    h.connect_tcp("localhost", &port_s)
        .expect("connect_tcp localhost");
    round_trip(&h, 0);
    assert_eq!(h.get_uri().unwrap(), format!("nbd://localhost:{port}/"));
}

// ---- socket activation ----------------------------------------------------------

#[test]
fn socket_activation_nbdkit() {
    if !have("nbdkit", "socket_activation_nbdkit") {
        return;
    }
    let dir = TempDir::new("sa-nbdkit");
    let envfile = dir.path("env");
    // The shell records its environment and execs nbdkit in the same
    // process, so LISTEN_PID must equal that pid.
    let script = format!("env > '{}' && exec nbdkit memory 1M", envfile.display());

    let h = Handle::new().unwrap();
    assert_eq!(h.socket_activation_name(), "");
    h.set_socket_activation_name("myname").unwrap();
    assert_eq!(h.socket_activation_name(), "myname");
    h.connect_systemd_socket_activation(&["sh", "-c", &script])
        .expect("socket activation");
    round_trip(&h, 0);
    let pid = h.subprocess_pid().expect("subprocess pid");
    let env = std::fs::read_to_string(&envfile).expect("child environment");
    let lines: Vec<&str> = env.lines().collect();
    assert!(
        lines.contains(&format!("LISTEN_PID={pid}").as_str()),
        "{env}"
    );
    assert!(lines.contains(&"LISTEN_FDS=1"), "{env}");
    assert!(lines.contains(&"LISTEN_FDNAMES=myname"), "{env}");

    let uri = h.get_uri().unwrap();
    let sock = uri
        .strip_prefix("nbd+unix:///?socket=")
        .unwrap_or_else(|| panic!("unexpected URI {uri}"))
        .to_string();
    assert!(Path::new(&sock).exists());
    drop(h);
    // Closing the handle stops the server and removes its socket.
    assert!(is_gone(pid), "server {pid} still running after close");
    assert!(!Path::new(&sock).exists(), "{sock} left behind");
    assert!(!Path::new(&sock).parent().unwrap().exists());
}

#[test]
fn socket_activation_unnamed() {
    if !have("nbdkit", "socket_activation_unnamed") {
        return;
    }
    let dir = TempDir::new("sa-unnamed");
    let envfile = dir.path("env");
    let script = format!("env > '{}' && exec nbdkit memory 1M", envfile.display());
    let h = Handle::new().unwrap();
    h.aio_connect_systemd_socket_activation(&["sh", "-c", &script])
        .expect("aio socket activation");
    while h.aio_is_connecting() {
        h.poll(1000).expect("poll");
    }
    assert!(h.aio_is_ready());
    let env = std::fs::read_to_string(&envfile).unwrap();
    assert!(!env.contains("LISTEN_FDNAMES="), "{env}");
}

#[test]
fn socket_activation_qemu_nbd() {
    if !have("qemu-nbd", "socket_activation_qemu_nbd") {
        return;
    }
    let dir = TempDir::new("sa-qemu");
    let disk = dir.path("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(1 << 20))
        .expect("disk image");
    let disk_s = disk.to_str().unwrap();

    let h = Handle::new().unwrap();
    h.connect_systemd_socket_activation(&["qemu-nbd", "-f", "raw", disk_s])
        .expect("socket activation with qemu-nbd");
    assert_eq!(h.size().unwrap(), 1 << 20);
    round_trip(&h, 65536);
    h.flush(nbd::CmdFlag::empty()).unwrap();
    let pid = h.subprocess_pid().unwrap();
    drop(h);
    assert!(is_gone(pid), "qemu-nbd {pid} still running after close");
    let on_disk = std::fs::read(&disk).unwrap();
    let expect: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(&on_disk[65536..65536 + 4096], &expect[..]);
}

// ---- nbd-server -------------------------------------------------------------------

#[test]
fn nbd_server_named_exports() {
    if !have("nbd-server", "nbd_server_named_exports") {
        return;
    }
    let dir = TempDir::new("nbd-server");
    let port = free_port(Ipv4Addr::LOCALHOST.into()).expect("a free port");
    let one = dir.path("one.img");
    let two = dir.path("two.img");
    std::fs::write(&one, vec![b'A'; 65536]).unwrap();
    std::fs::write(&two, vec![b'B'; 131072]).unwrap();
    let conf = dir.path("config");
    let mut f = std::fs::File::create(&conf).unwrap();
    write!(
        f,
        "[generic]\nport = {port}\nlistenaddr = 127.0.0.1\nallowlist = true\n\
         [one]\nexportname = {}\n\
         [two]\nexportname = {}\nreadonly = true\n",
        one.display(),
        two.display()
    )
    .unwrap();
    drop(f);
    // nbd-server daemonizes (forking a process per client, so any number
    // of connections work); it writes its pid to the file named by -p.
    let pidfile = dir.path("nbd-server.pid");
    let status = Command::new("nbd-server")
        .arg("-C")
        .arg(&conf)
        .arg("-p")
        .arg(&pidfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("start nbd-server");
    assert!(status.success(), "nbd-server failed: {status}");
    let _daemon = Daemon(pidfile.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&pidfile).map_or(true, |s| s.trim().is_empty())
        || std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err()
    {
        assert!(Instant::now() < deadline, "nbd-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let h = Handle::new().unwrap();
    h.connect_uri(format!("nbd://127.0.0.1:{port}/one"))
        .expect("connect to export one");
    assert_eq!(h.size().unwrap(), 65536);
    let mut buf = [0u8; 512];
    h.pread(&mut buf, 0, nbd::CmdFlag::empty()).unwrap();
    assert!(buf.iter().all(|&b| b == b'A'));
    assert!(!h.is_read_only().unwrap());
    round_trip(&h, 4096);
    assert_eq!(h.get_uri().unwrap(), format!("nbd://127.0.0.1:{port}/one"));
    drop(h);

    let h = Handle::new().unwrap();
    h.set_export_name(b"two").unwrap();
    h.connect_tcp("127.0.0.1", &port.to_string())
        .expect("connect to export two");
    assert_eq!(h.size().unwrap(), 131072);
    h.pread(&mut buf, 1000, nbd::CmdFlag::empty()).unwrap();
    assert!(buf.iter().all(|&b| b == b'B'));
    assert!(h.is_read_only().unwrap());
    drop(h);

    // An export the server does not have.
    let h = Handle::new().unwrap();
    let r = h.connect_uri(format!("nbd://127.0.0.1:{port}/three"));
    assert!(r.is_err(), "connecting to a missing export succeeded");
}

// ---- vsock ------------------------------------------------------------------------

#[test]
fn vsock_without_a_server() {
    let h = Handle::new().unwrap();
    assert!(h.supports_vsock());
    // Nothing listens on this port of the local CID: the kernel refuses,
    // times out, or (without AF_VSOCK) cannot make the socket.
    let e = h.connect_vsock(1, 10809).expect_err("vsock connect");
    assert!(
        e.message() == "connect" || e.message() == "socket",
        "unexpected message {e}"
    );
    assert_ne!(e.errno(), 0);
    assert!(h.aio_is_dead());
    assert_eq!(h.get_uri().unwrap(), "nbd+vsock://1:10809/");
}

// ---- bad input ----------------------------------------------------------------------

#[test]
fn bad_uris() {
    let cases: &[(&str, i32, &str)] = &[
        (
            "nbd://[::1",
            libc::EINVAL,
            "unable to parse URI: nbd://[::1",
        ),
        (
            "nbd://host:abc/",
            libc::EINVAL,
            "unable to parse URI: nbd://host:abc/",
        ),
        (
            "nbd:///%zz",
            libc::EINVAL,
            "unable to parse URI: nbd:///%zz",
        ),
        (
            "nbd://local host/",
            libc::EINVAL,
            "unable to parse URI: nbd://local host/",
        ),
        ("foo://x", libc::EINVAL, "unknown NBD URI scheme: foo"),
        // Schemes are case-insensitive: a known one in capitals is
        // checked as itself, and named as written.
        (
            "NBD+UNIX:///",
            libc::EINVAL,
            "cannot parse socket parameter from NBD URI \
             (did you mean to use \"NBD+UNIX:///?socket=...\"?)",
        ),
        (
            "localhost:10809",
            libc::EINVAL,
            "unknown NBD URI scheme: localhost",
        ),
        ("nbd:x", libc::EINVAL, "URI must begin with 'nbd://'"),
        (
            "/tmp/sock",
            libc::EINVAL,
            "NBD URI does not have a scheme: valid NBD URIs should start with a scheme \
             like nbd://, nbds:// or nbd+unix://: to open a local socket use \
             \"nbd+unix://?socket=PATH\"",
        ),
        (
            "",
            libc::EINVAL,
            "NBD URI does not have a scheme: valid NBD URIs should start with a scheme \
             like nbd://, nbds:// or nbd+unix://",
        ),
        (
            "nbd+unix:///",
            libc::EINVAL,
            "cannot parse socket parameter from NBD URI \
             (did you mean to use \"nbd+unix:///?socket=...\"?)",
        ),
        (
            "nbd://x/?socket=/y",
            libc::EINVAL,
            "socket parameter is incompatible with \"nbd:\" \
             (did you mean to use \"nbd+unix:///?socket=...\"?)",
        ),
        (
            "nbd+vsock://abc",
            libc::EINVAL,
            "cannot parse vsock CID from NBD URI: abc",
        ),
        // TLS parameters: local files need permission; booleans must parse.
        (
            "nbd://localhost/?tls-certificates=/x",
            libc::EPERM,
            "local file access (tls-certificates) is not allowed, \
             call nbd_set_uri_allow_local_file to enable this",
        ),
        (
            "nbds://localhost/?tls-verify-peer=perhaps",
            libc::EINVAL,
            "could not parse tls-verify-peer parameter, \
             expecting tls-verify-peer=true|false",
        ),
    ];
    for &(uri, errno, message) in cases {
        let h = Handle::new().unwrap();
        assert_err(h.connect_uri(uri), errno, message);
        // A URI that is refused leaves the handle as it was.
        assert!(h.aio_is_created(), "{uri}: state {}", h.connection_state());
        let h = Handle::new().unwrap();
        assert_err(h.aio_connect_uri(uri), errno, message);
    }

    let h = Handle::new().unwrap();
    h.set_uri_allow_local_file(true).unwrap();
    assert!(h.uri_allow_local_file());
    // Allowed, the parameter is taken (it is used once TLS starts).
    assert_err(
        h.connect_uri("nbd+unix:///?socket=/nonexistent/s&tls-psk-file=/x"),
        libc::ENOENT,
        "connect",
    );
}

#[test]
fn forbidden_transports_and_tls() {
    const TCP: AllowTransport = AllowTransport::TCP;
    const UNIX: AllowTransport = AllowTransport::UNIX;
    const SSH: AllowTransport = AllowTransport::SSH;
    let h = Handle::new().unwrap();
    // Every transport, ssh included, as in libnbd 1.22.
    assert_eq!(h.uri_allow_transports(), AllowTransport::all());
    h.set_uri_allow_transports(TCP).unwrap();
    assert_err(
        h.connect_uri("nbd+unix:///?socket=/x"),
        libc::EPERM,
        "URI transport nbd+unix is not permitted",
    );
    assert_err(
        h.connect_uri("nbd+vsock:///"),
        libc::EPERM,
        "URI transport nbd+vsock is not permitted",
    );
    let h = Handle::new().unwrap();
    h.set_uri_allow_transports(UNIX).unwrap();
    assert_err(
        h.connect_uri("nbd://localhost/"),
        libc::EPERM,
        "URI transport nbd is not permitted",
    );
    assert_err(
        h.connect_uri("nbd+ssh://localhost/"),
        libc::EPERM,
        "URI transport nbd+ssh is not permitted",
    );
    assert_err(
        h.set_uri_allow_transports(AllowTransport::from_bits_retain(0x100)),
        libc::EINVAL,
        "mask: invalid value for flag: 0x100",
    );
    assert_err(
        h.set_uri_allow_transports(AllowTransport::from_bits_retain(0x10)),
        libc::EINVAL,
        "mask: invalid value for flag: 0x10",
    );
    h.set_uri_allow_transports(AllowTransport::all()).unwrap();
    assert_eq!(h.uri_allow_transports(), AllowTransport::all());
    h.set_uri_allow_transports(SSH).unwrap();
    h.set_uri_allow_tls(Tls::Disable).unwrap();
    assert_err(
        h.connect_uri("nbds+ssh://localhost/"),
        libc::EPERM,
        "URI TLS setting nbds+ssh is not permitted",
    );

    let h = Handle::new().unwrap();
    assert_eq!(h.uri_allow_tls(), Tls::Allow);
    h.set_uri_allow_tls(Tls::Disable).unwrap();
    assert_err(
        h.connect_uri("nbds://localhost/"),
        libc::EPERM,
        "URI TLS setting nbds is not permitted",
    );
    h.set_uri_allow_tls(Tls::Require).unwrap();
    assert_err(
        h.connect_uri("nbd://localhost/"),
        libc::EPERM,
        "URI TLS setting nbd is not permitted",
    );
    // An invalid TLS value cannot be written in Rust: tests/c/enum-edge.c
    // checks nbd_set_uri_allow_tls's EINVAL.
    assert!(h.aio_is_created());
}

#[test]
fn unreachable_host_and_refused_port() {
    // A name that cannot resolve, decided locally (no DNS query leaves).
    let h = Handle::new().unwrap();
    let e = h.connect_tcp("no such host", "10809").unwrap_err();
    assert_eq!(e.errno(), 0);
    assert!(
        e.message()
            .starts_with("getaddrinfo: hostname \"no such host\" port \"10809\": "),
        "{e}"
    );
    assert!(
        h.aio_is_created(),
        "a failed lookup leaves the handle created"
    );
    let e = h.connect_tcp("127.0.0.1", "no-such-service").unwrap_err();
    assert_eq!(e.errno(), 0);
    assert!(e
        .message()
        .starts_with("getaddrinfo: hostname \"127.0.0.1\" port \"no-such-service\": "));

    let e = h.connect_uri("nbd://bad..host/").unwrap_err();
    assert_eq!(e.errno(), 0);
    assert!(
        e.message()
            .starts_with("getaddrinfo: hostname \"bad..host\" port \"10809\": "),
        "{e}"
    );

    // A port nothing listens on: refused, and the handle is still usable.
    let port = free_port(Ipv4Addr::LOCALHOST.into()).unwrap();
    assert_err(
        h.connect_tcp("127.0.0.1", &port.to_string()),
        libc::ECONNREFUSED,
        &format!("connect: 127.0.0.1:{port}: could not connect to remote host"),
    );
    assert!(h.aio_is_created());
    assert_err(
        h.aio_connect_uri(format!("nbd://127.0.0.1:{port}/")),
        libc::ECONNREFUSED,
        &format!("connect: 127.0.0.1:{port}: could not connect to remote host"),
    );
    assert!(h.aio_is_created());

    // A Unix socket that does not exist kills the handle, as in libnbd.
    let h = Handle::new().unwrap();
    assert_err(
        h.connect_unix("/nonexistent/rust-libnbd/sock"),
        libc::ENOENT,
        "connect",
    );
    assert!(h.aio_is_dead());
    assert_eq!(
        h.get_uri().unwrap(),
        "nbd+unix:///?socket=/nonexistent/rust-libnbd/sock"
    );
    let h = Handle::new().unwrap();
    assert_err(
        h.connect_uri("nbd+unix:///e?socket=/nonexistent/rust-libnbd/sock"),
        libc::ENOENT,
        "connect",
    );
}

#[test]
fn states_and_settings() {
    let h = Handle::new().unwrap();
    assert!(h.supports_uri());
    assert_err(
        h.get_uri(),
        libc::ENOTCONN,
        "invalid state: START: the handle must be connecting, or negotiating, \
         or connected with the server, or shut down, or dead",
    );
    assert!(h.is_uri("nbd://localhost"));
    assert!(h.is_uri("nbd+unix:///?socket=/x"));
    assert!(h.is_uri("nbds+vsock://2"));
    assert!(!h.is_uri("/tmp/disk.img"));
    assert!(!h.is_uri("disk.img"));
    assert!(!h.is_uri("http://example.com/"));

    assert_err(
        h.set_socket_activation_name("not valid!"),
        libc::EINVAL,
        "socket activation name must contain only ASCII letters and digits",
    );
    assert_err(
        h.set_socket_activation_name("x".repeat(33)),
        libc::ENAMETOOLONG,
        "socket activation name must be at most 32 characters",
    );
    h.set_socket_activation_name("").unwrap();

    // A program that cannot be run: the handle dies, nothing is left running.
    let h = Handle::new().unwrap();
    assert!(h
        .connect_systemd_socket_activation(&["/nonexistent/rust-libnbd-server"])
        .is_err());
    assert!(h.aio_is_dead());
    assert_err(
        h.connect_systemd_socket_activation(&["true"]),
        libc::EINVAL,
        "invalid state: DEAD: the handle must be newly created",
    );
    let empty: &[&str] = &[];
    let h = Handle::new().unwrap();
    assert_err(
        h.connect_systemd_socket_activation(empty),
        libc::EINVAL,
        "missing command name in argv list",
    );
}

/// `aio_connect` takes any `ServerAddr`: a Unix socket by path or by a
/// name in the abstract namespace (a leading NUL byte) reaches the
/// listener; a path too long for a socket address is refused.
#[test]
fn aio_connect_unix_path_and_abstract_name() {
    use std::ffi::OsString;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStringExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
    use std::path::PathBuf;

    let dir = TempDir::new("aio-connect-unix");
    let path = dir.path("sock");
    let listener = UnixListener::bind(&path).unwrap();
    let h = Handle::new().unwrap();
    h.aio_connect(nbd::ServerAddr::Unix(path.clone()))
        .expect("aio_connect to a path");
    // A Unix connect completes at once: the listener has it.
    let (_peer, _) = listener.accept().unwrap();
    assert!(h.aio_is_connecting());
    assert!(
        h.get_uri().unwrap().contains("socket="),
        "{:?}",
        h.get_uri()
    );

    let name = format!("rust-libnbd-test-{}", std::process::id());
    let abstract_addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixListener::bind_addr(&abstract_addr).unwrap();
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(name.as_bytes());
    let h = Handle::new().unwrap();
    h.aio_connect(nbd::ServerAddr::Unix(PathBuf::from(OsString::from_vec(
        bytes,
    ))))
    .expect("aio_connect to an abstract name");
    let (_peer, _) = listener.accept().unwrap();
    assert!(h.aio_is_connecting());

    let h = Handle::new().unwrap();
    let long = PathBuf::from("/tmp/".to_string() + &"x".repeat(200));
    let err = h.aio_connect(nbd::ServerAddr::Unix(long)).unwrap_err();
    assert_eq!(err.errno(), libc::ENAMETOOLONG, "{err}");
    assert!(h.aio_is_created());
}
