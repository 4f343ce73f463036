//! Beyond libnbd, connecting: the choice of IP family for TCP. Real
//! nbdkit servers listening on one family only.

mod common;

use common::{have, Server};
use nbd::{Handle, IpFamily};

fn free_port(bind: &str) -> String {
    let l = std::net::TcpListener::bind(bind).unwrap();
    l.local_addr().unwrap().port().to_string()
}

/// `nbdkit memory 1M` listening on `addr` only.
fn nbdkit_on(addr: &str, port: &str) -> Server {
    let target = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    };
    Server::start(
        "nbdkit",
        &["-f", "-i", addr, "-p", port, "memory", "1M"],
        move || std::net::TcpStream::connect(&target).is_ok(),
    )
}

fn connect(family: IpFamily, host: &str, port: &str) -> nbd::Result<Handle> {
    let h = Handle::new().unwrap();
    h.set_ip_family(family)?;
    h.connect_tcp(host, port).map(|()| h)
}

#[test]
fn ip_family_limits_the_addresses_tried() {
    if !have("nbdkit", "ip_family_limits_the_addresses_tried") {
        return;
    }
    let h = Handle::new().unwrap();
    assert_eq!(h.ip_family(), IpFamily::Any);

    let port4 = free_port("127.0.0.1:0");
    let _v4 = nbdkit_on("127.0.0.1", &port4);
    for family in [IpFamily::Any, IpFamily::V4] {
        let h = connect(family, "127.0.0.1", &port4).unwrap();
        assert_eq!(h.size().unwrap(), 1 << 20);
    }
    // No IPv6 address in "127.0.0.1": the resolver says so.
    let e = connect(IpFamily::V6, "127.0.0.1", &port4).unwrap_err();
    assert!(
        e.message()
            .starts_with("getaddrinfo: hostname \"127.0.0.1\" port"),
        "{e}"
    );

    let port6 = free_port("[::1]:0");
    let _v6 = nbdkit_on("::1", &port6);
    for family in [IpFamily::Any, IpFamily::V6] {
        let h = connect(family, "::1", &port6).unwrap();
        assert_eq!(h.size().unwrap(), 1 << 20);
    }
    let e = connect(IpFamily::V4, "::1", &port6).unwrap_err();
    assert!(
        e.message().starts_with("getaddrinfo: hostname \"::1\""),
        "{e}"
    );

    // Fixed once connecting.
    let h = connect(IpFamily::V4, "127.0.0.1", &port4).unwrap();
    assert_eq!(
        h.set_ip_family(IpFamily::V6).unwrap_err().errno(),
        libc::EINVAL
    );
}

/// A ready callback that records each error it is called with.
fn recorder() -> (nbd::Completion, std::sync::Arc<std::sync::Mutex<Vec<i32>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let cb = nbd::Completion::new(move |err| {
        seen2.lock().unwrap().push(*err);
        1
    });
    (cb, seen)
}

#[test]
fn ready_callback_when_the_connection_is_ready_or_fails() {
    if !have(
        "nbdkit",
        "ready_callback_when_the_connection_is_ready_or_fails",
    ) {
        return;
    }
    // Asynchronous connect: called once, with 0, when READY is reached.
    let h = Handle::new().unwrap();
    let (cb, seen) = recorder();
    h.set_ready_callback(cb).unwrap();
    h.aio_connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])
        .unwrap();
    assert!(seen.lock().unwrap().is_empty());
    while !h.aio_is_ready() {
        h.poll(-1).unwrap();
    }
    assert_eq!(*seen.lock().unwrap(), [0]);
    h.pwrite(&[1; 512], 0, nbd::CmdFlag::empty()).unwrap();
    assert_eq!(*seen.lock().unwrap(), [0]);

    // Option mode: not while negotiating, only once opt_go succeeds.
    let h = Handle::new().unwrap();
    let (cb, seen) = recorder();
    h.set_ready_callback(cb).unwrap();
    h.set_opt_mode(true).unwrap();
    h.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])
        .unwrap();
    assert!(h.aio_is_negotiating());
    assert!(seen.lock().unwrap().is_empty());
    h.opt_go().unwrap();
    assert_eq!(*seen.lock().unwrap(), [0]);

    // An oldstyle server.
    let h = Handle::new().unwrap();
    let (cb, seen) = recorder();
    h.set_ready_callback(cb).unwrap();
    h.connect_command(&["nbdkit", "-s", "-o", "--exit-with-parent", "memory", "1M"])
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [0]);

    // A server that dies in the handshake: called with an error.
    let h = Handle::new().unwrap();
    let (cb, seen) = recorder();
    h.set_ready_callback(cb).unwrap();
    assert!(h.connect_command(&["sh", "-c", "exit 1"]).is_err());
    assert_eq!(*seen.lock().unwrap(), [libc::EIO]);

    // Closed while negotiating: never called, and freed.
    let h = Handle::new().unwrap();
    let (cb, seen) = recorder();
    h.set_ready_callback(cb).unwrap();
    h.set_opt_mode(true).unwrap();
    h.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])
        .unwrap();
    drop(h);
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(std::sync::Arc::strong_count(&seen), 1, "callback not freed");

    // Only before connecting.
    let h = Handle::new().unwrap();
    h.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "1M"])
        .unwrap();
    let (cb, _) = recorder();
    assert_eq!(h.set_ready_callback(cb).unwrap_err().errno(), libc::EINVAL);
}
