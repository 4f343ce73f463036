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
