//! TLS against real servers: nbdkit and qemu-nbd, with X.509 certificates
//! and with pre-shared keys, through the Rust API; the failures each
//! report libnbd's errno and a message naming the reason.
//!
//! Each test makes a throwaway CA, server and client certificates with
//! certtool (gnutls-bin, installed by `make check`) and a PSK file.

mod common;
// The wire format, shared with the library, for a scripted server.
#[allow(dead_code)]
#[path = "../src/proto.rs"]
mod proto;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use common::{have, Server, TempDir};
use nbd::{Completion, Handle, Tls};

const TLS_DISABLE: Tls = Tls::Disable;
const TLS_ALLOW: Tls = Tls::Allow;
const TLS_REQUIRE: Tls = Tls::Require;

/// A CA, a server and a client certificate, a PSK file, and a CA nobody
/// trusts, in one temporary directory.
struct Pki {
    dir: TempDir,
}

fn certtool(args: &[&str]) {
    common::run("certtool", args);
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = TempDir::new(tag);
        let pki = Pki { dir };
        let certs = pki.certs();
        std::fs::create_dir_all(&certs).unwrap();
        let p = |name: &str| certs.join(name).to_str().unwrap().to_string();
        let t = |name: &str, text: &str| {
            let path = pki.dir.path(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_string()
        };
        for key in ["ca-key.pem", "server-key.pem", "client-key.pem"] {
            // RSA: qemu-nbd insists on the key encipherment usage.
            certtool(&["--generate-privkey", "--bits=2048", "--outfile", &p(key)]);
        }
        let ca = t(
            "ca.info",
            "cn = Test CA\nca\ncert_signing_key\ncrl_signing_key\nexpiration_days = 2\n",
        );
        certtool(&[
            "--generate-self-signed",
            "--load-privkey",
            &p("ca-key.pem"),
            "--template",
            &ca,
            "--outfile",
            &p("ca-cert.pem"),
        ]);
        let server = t(
            "server.info",
            "organization = Test\ncn = localhost\ndns_name = localhost\n\
             ip_address = 127.0.0.1\ntls_www_server\nsigning_key\nencryption_key\n\
             expiration_days = 2\n",
        );
        let client = t(
            "client.info",
            "organization = Test\ncn = client\ntls_www_client\nsigning_key\n\
             encryption_key\nexpiration_days = 2\n",
        );
        for (who, info) in [("server", &server), ("client", &client)] {
            certtool(&[
                "--generate-certificate",
                "--load-ca-certificate",
                &p("ca-cert.pem"),
                "--load-ca-privkey",
                &p("ca-key.pem"),
                "--load-privkey",
                &p(&format!("{who}-key.pem")),
                "--template",
                info,
                "--outfile",
                &p(&format!("{who}-cert.pem")),
            ]);
        }
        // A CA that signed nothing the server has.
        let other = pki.other_ca();
        std::fs::create_dir_all(&other).unwrap();
        let o = |name: &str| other.join(name).to_str().unwrap().to_string();
        certtool(&[
            "--generate-privkey",
            "--key-type=ecdsa",
            "--outfile",
            &o("ca-key.pem"),
        ]);
        certtool(&[
            "--generate-self-signed",
            "--load-privkey",
            &o("ca-key.pem"),
            "--template",
            &ca,
            "--outfile",
            &o("ca-cert.pem"),
        ]);
        // PSK: the file nbdkit reads, and the same as qemu's keys.psk.
        let psk = "alice:8e1f6b1b0a9d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80910\n";
        std::fs::create_dir_all(pki.psk_dir()).unwrap();
        std::fs::write(pki.psk_file(), psk).unwrap();
        std::fs::write(
            pki.dir.path("wrong.psk"),
            "alice:00112233445566778899aabbccddeeff\n",
        )
        .unwrap();
        pki
    }

    fn certs(&self) -> PathBuf {
        self.dir.path("certs")
    }
    fn other_ca(&self) -> PathBuf {
        self.dir.path("other-ca")
    }
    fn psk_dir(&self) -> PathBuf {
        self.dir.path("psk")
    }
    fn psk_file(&self) -> PathBuf {
        self.psk_dir().join("keys.psk")
    }
    fn wrong_psk(&self) -> PathBuf {
        self.dir.path("wrong.psk")
    }
    fn sock(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Everything the tests need, or a reason to skip.
fn tools(test: &str, qemu: bool) -> bool {
    have("certtool", test) && have("nbdkit", test) && (!qemu || have("qemu-nbd", test))
}

/// Whether a server accepts connections on `sock` (the socket file exists
/// from bind, before listen).
fn listening(sock: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(sock).is_ok()
}

/// `nbdkit ARGS memory 64M` on a Unix socket, in the foreground.
fn nbdkit_unix(sock: &Path, args: &[&str]) -> Server {
    let mut argv = vec!["-f", "-U", s(sock)];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["memory", "64M"]);
    let sock = sock.to_path_buf();
    Server::start("nbdkit", &argv, move || listening(&sock))
}

fn qemu_nbd(sock: &Path, pki: &Pki, object: &str) -> Server {
    let image = pki.dir.path("disk.img");
    std::fs::write(&image, vec![0u8; 4 << 20]).unwrap();
    let sock_arg = sock.to_path_buf();
    Server::start(
        "qemu-nbd",
        &[
            "--object",
            object,
            "--tls-creds",
            "tls0",
            "-f",
            "raw",
            // Persistent: the readiness probe is a client too.
            "-t",
            "-k",
            s(sock),
            s(&image),
        ],
        move || listening(&sock_arg),
    )
}

/// Writes a pattern and reads it back, small and large.
fn check_io(h: &Handle) {
    let size = h.size().unwrap();
    assert!(size >= 4 << 20);
    let big: Vec<u8> = (0..(2 << 20)).map(|i| (i * 7 + i / 4096) as u8).collect();
    h.pwrite(&big, 4096, nbd::CmdFlag::empty()).unwrap();
    let mut back = vec![0u8; big.len()];
    h.pread(&mut back, 4096, nbd::CmdFlag::empty()).unwrap();
    assert!(back == big, "data read back differs");
    h.pwrite(b"hello, tls", 0, nbd::CmdFlag::empty()).unwrap();
    let mut small = [0u8; 10];
    h.pread(&mut small, 0, nbd::CmdFlag::empty()).unwrap();
    assert_eq!(&small, b"hello, tls");
}

fn expect_err(r: nbd::Result<()>, errno: i32, needle: &str) {
    let e = r.expect_err("connect should fail");
    assert_eq!(e.errno(), errno, "errno of {e}");
    assert!(e.message().contains(needle), "{needle:?} not in {e}");
}

#[test]
fn nbdkit_x509_read_write() {
    if !tools("nbdkit_x509_read_write", false) {
        return;
    }
    let pki = Pki::new("tls-x509");
    let sock = pki.sock("x.sock");
    let certs = pki.certs();
    let _srv = nbdkit_unix(
        &sock,
        &[
            "--tls=require",
            &format!("--tls-certificates={}", s(&certs)),
        ],
    );
    let h = Handle::new().unwrap();
    assert!(h.supports_tls());
    assert_eq!(h.tls(), TLS_DISABLE);
    assert!(h.tls_verify_peer());
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&certs).unwrap();
    h.connect_unix(&sock).unwrap();
    assert!(h.tls_negotiated().unwrap());
    // Negotiation went on over TLS.
    assert!(h.structured_replies_negotiated().unwrap());
    check_io(&h);
    // Settings are fixed once connected.
    assert_eq!(h.set_tls(TLS_ALLOW).unwrap_err().errno(), libc::EINVAL);
    h.shutdown(nbd::Shutdown::empty()).unwrap();
}

#[test]
fn nbdkit_x509_tcp_verifies_host() {
    if !tools("nbdkit_x509_tcp_verifies_host", false) {
        return;
    }
    let pki = Pki::new("tls-tcp");
    let certs = pki.certs();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let port2 = port.clone();
    let _srv = Server::start(
        "nbdkit",
        &[
            "-f",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "--tls=require",
            &format!("--tls-certificates={}", s(&certs)),
            "memory",
            "64M",
        ],
        move || std::net::TcpStream::connect(format!("127.0.0.1:{port2}")).is_ok(),
    );
    // By name and by address: both are in the certificate.
    for host in ["localhost", "127.0.0.1"] {
        let h = Handle::new().unwrap();
        h.set_tls(TLS_REQUIRE).unwrap();
        h.set_tls_certificates(&certs).unwrap();
        h.connect_tcp(host, &port).unwrap();
        assert!(h.tls_negotiated().unwrap());
        assert_eq!(h.tls_hostname().as_deref(), Some(host));
        check_io(&h);
    }
    // An untrusted CA.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(pki.other_ca()).unwrap();
    expect_err(
        h.connect_tcp("localhost", &port),
        0,
        "certificate verify failed",
    );
    assert!(h.aio_is_dead());
    // ... which is fine when the peer is not verified.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(pki.other_ca()).unwrap();
    h.set_tls_verify_peer(false).unwrap();
    h.connect_tcp("localhost", &port).unwrap();
    assert!(h.tls_negotiated().unwrap());
    // The name checked can be set instead of the one connected to.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&certs).unwrap();
    h.set_tls_hostname("wrong.example.com").unwrap();
    expect_err(h.connect_tcp("localhost", &port), 0, "hostname mismatch");
}

#[test]
fn nbdkit_x509_unix_hostname_rules() {
    if !tools("nbdkit_x509_unix_hostname_rules", false) {
        return;
    }
    let pki = Pki::new("tls-unix-host");
    let sock = pki.sock("x.sock");
    let certs = pki.certs();
    let _srv = nbdkit_unix(
        &sock,
        &[
            "--tls=require",
            &format!("--tls-certificates={}", s(&certs)),
        ],
    );
    // No host name over a Unix socket: the chain is still verified, so
    // a certificate from a CA we do not trust is refused ...
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(pki.other_ca()).unwrap();
    assert_eq!(h.tls_hostname(), None);
    expect_err(
        h.connect_unix(&sock),
        0,
        "TLS handshake: certificate verify failed: unable to get local issuer certificate",
    );
    assert!(h.aio_is_dead());
    // ... while one from our CA is accepted, whatever name it carries.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&certs).unwrap();
    h.connect_unix(&sock).unwrap();
    assert!(h.tls_negotiated().unwrap());
    // With a TLS host name the name is checked too.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(pki.other_ca()).unwrap();
    h.set_tls_hostname("localhost").unwrap();
    assert_eq!(h.tls_hostname().as_deref(), Some("localhost"));
    expect_err(h.connect_unix(&sock), 0, "certificate verify failed");
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&certs).unwrap();
    h.set_tls_hostname("other.example").unwrap();
    expect_err(h.connect_unix(&sock), 0, "hostname mismatch");
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&certs).unwrap();
    h.set_tls_hostname("localhost").unwrap();
    h.connect_unix(&sock).unwrap();
    check_io(&h);
}

#[test]
fn nbdkit_psk_read_write_and_failures() {
    if !tools("nbdkit_psk_read_write_and_failures", false) {
        return;
    }
    let pki = Pki::new("tls-psk");
    let sock = pki.sock("p.sock");
    let _srv = nbdkit_unix(
        &sock,
        &[
            "--tls=require",
            &format!("--tls-psk={}", s(&pki.psk_file())),
        ],
    );
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_psk_file(pki.psk_file()).unwrap();
    h.set_tls_username("alice").unwrap();
    assert_eq!(h.tls_username().unwrap(), "alice");
    h.connect_unix(&sock).unwrap();
    assert!(h.tls_negotiated().unwrap());
    check_io(&h);
    drop(h);

    // Wrong key: the server drops the handshake.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_psk_file(pki.wrong_psk()).unwrap();
    h.set_tls_username("alice").unwrap();
    expect_err(h.connect_unix(&sock), 0, "TLS handshake: ");
    assert!(h.aio_is_dead());

    // A user the file does not have.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_psk_file(pki.psk_file()).unwrap();
    h.set_tls_username("bob").unwrap();
    expect_err(
        h.connect_unix(&sock),
        libc::EINVAL,
        "username bob was not found in PSK file",
    );

    // No such file.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_psk_file(pki.dir.path("missing.psk")).unwrap();
    h.set_tls_username("alice").unwrap();
    expect_err(h.connect_unix(&sock), libc::ENOENT, "open: ");

    // The server requires TLS but the handle does not do it.
    let h = Handle::new().unwrap();
    expect_err(
        h.connect_unix(&sock),
        libc::ENOTSUP,
        "the server requires TLS encryption first",
    );
}

#[test]
fn uris() {
    if !tools("uris", false) {
        return;
    }
    let pki = Pki::new("tls-uri");
    let xsock = pki.sock("x.sock");
    let psock = pki.sock("p.sock");
    let certs = pki.certs();
    let _x = nbdkit_unix(
        &xsock,
        &[
            "--tls=require",
            &format!("--tls-certificates={}", s(&certs)),
        ],
    );
    let _p = nbdkit_unix(
        &psock,
        &[
            "--tls=require",
            &format!("--tls-psk={}", s(&pki.psk_file())),
        ],
    );
    let uri = format!(
        "nbds+unix:///?socket={}&tls-certificates={}",
        s(&xsock),
        s(&certs)
    );
    // Local files need permission.
    let h = Handle::new().unwrap();
    let e = h.connect_uri(&uri).unwrap_err();
    assert_eq!(e.errno(), libc::EPERM);
    assert!(e
        .message()
        .contains("local file access (tls-certificates) is not allowed"));

    let h = Handle::new().unwrap();
    h.set_uri_allow_local_file(true).unwrap();
    h.connect_uri(&uri).unwrap();
    assert_eq!(h.tls(), TLS_REQUIRE);
    assert!(h.tls_negotiated().unwrap());
    check_io(&h);

    // PSK, the user name from the authority.
    let uri = format!(
        "nbds+unix://alice@/?socket={}&tls-psk-file={}",
        s(&psock),
        s(&pki.psk_file())
    );
    let h = Handle::new().unwrap();
    h.set_uri_allow_local_file(true).unwrap();
    h.connect_uri(&uri).unwrap();
    assert_eq!(h.tls_username().unwrap(), "alice");
    assert!(h.tls_negotiated().unwrap());
    // The URI round-trips, as libnbd writes it.
    assert_eq!(h.get_uri().unwrap(), uri);
    check_io(&h);

    // tls-username= is no URI parameter (libnbd 1.22 ignores it): the
    // PSK identity stays the default one, which the server refuses.
    let uri = format!(
        "nbds+unix:///?socket={}&tls-psk-file={}&tls-username=alice",
        s(&psock),
        s(&pki.psk_file())
    );
    let h = Handle::new().unwrap();
    h.set_uri_allow_local_file(true).unwrap();
    assert!(h.connect_uri(&uri).is_err());
    assert_ne!(h.tls_username().ok().as_deref(), Some("alice"));
    // tls-hostname / tls-verify-peer parameters.
    let uri = format!(
        "nbds+unix:///?socket={}&tls-certificates={}&tls-hostname=wrong.example",
        s(&xsock),
        s(&certs)
    );
    let h = Handle::new().unwrap();
    h.set_uri_allow_local_file(true).unwrap();
    expect_err(h.connect_uri(&uri), 0, "hostname mismatch");
    let h = Handle::new().unwrap();
    h.set_uri_allow_local_file(true).unwrap();
    h.connect_uri(format!("{uri}&tls-verify-peer=false"))
        .unwrap();
    assert!(h.tls_negotiated().unwrap());

    // nbds: over a server without TLS fails.
    let plain = pki.sock("plain.sock");
    let _plain = nbdkit_unix(&plain, &[]);
    let h = Handle::new().unwrap();
    expect_err(
        h.connect_uri(format!("nbds+unix:///?socket={}", s(&plain))),
        libc::ENOTSUP,
        "handshake: server refused TLS, but handle TLS setting is 'require' (2)",
    );
}

#[test]
fn allow_falls_back_and_require_refused() {
    if !tools("allow_falls_back_and_require_refused", false) {
        return;
    }
    let pki = Pki::new("tls-fallback");
    let plain = pki.sock("plain.sock");
    let _plain = nbdkit_unix(&plain, &[]);
    let h = Handle::new().unwrap();
    h.set_tls(TLS_ALLOW).unwrap();
    h.connect_unix(&plain).unwrap();
    assert!(!h.tls_negotiated().unwrap());
    check_io(&h);

    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    expect_err(
        h.connect_unix(&plain),
        libc::ENOTSUP,
        "handshake: server refused TLS, but handle TLS setting is 'require' (2)",
    );
    assert!(h.aio_is_dead());

    // An oldstyle server cannot do TLS at all.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    let e = h
        .connect_command(&["nbdkit", "-s", "-o", "--exit-with-parent", "memory", "1M"])
        .unwrap_err();
    assert_eq!(e.errno(), libc::ENOTSUP);
    assert!(e
        .message()
        .contains("handshake: server is oldstyle, but handle TLS setting is 'require' (2)"));
    let h = Handle::new().unwrap();
    h.set_tls(TLS_ALLOW).unwrap();
    h.connect_command(&["nbdkit", "-s", "-o", "--exit-with-parent", "memory", "1M"])
        .unwrap();
    assert!(!h.tls_negotiated().unwrap());
    // An invalid setting cannot be written in Rust: tests/c/enum-edge.c
    // checks nbd_set_tls's EINVAL.
}

#[test]
fn opt_mode_starttls() {
    if !tools("opt_mode_starttls", false) {
        return;
    }
    let pki = Pki::new("tls-opt");
    let sock = pki.sock("on.sock");
    let certs = pki.certs();
    // --tls=on: TLS optional, so plaintext options work too.
    let _srv = nbdkit_unix(
        &sock,
        &["--tls=on", &format!("--tls-certificates={}", s(&certs))],
    );

    // TLS disabled: nothing automatic; the caller asks.
    let h = Handle::new().unwrap();
    h.set_opt_mode(true).unwrap();
    h.set_tls_certificates(&certs).unwrap();
    h.connect_unix(&sock).unwrap();
    assert!(h.aio_is_negotiating());
    assert!(!h.tls_negotiated().unwrap());
    assert!(h.opt_starttls().unwrap());
    assert!(h.tls_negotiated().unwrap());
    // Asking twice is refused by the server; TLS stays.
    assert!(!h.opt_starttls().unwrap());
    assert!(h.tls_negotiated().unwrap());
    h.opt_go().unwrap();
    check_io(&h);

    // TLS allowed or required: STARTTLS happens before negotiation.
    let h = Handle::new().unwrap();
    h.set_opt_mode(true).unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&certs).unwrap();
    h.connect_unix(&sock).unwrap();
    assert!(h.aio_is_negotiating());
    assert!(h.tls_negotiated().unwrap());
    // Asking again: the server refuses, TLS stays (libnbd 1.22.2 aborts
    // on an assertion here; a README difference).
    assert!(!h.opt_starttls().unwrap());
    assert!(h.tls_negotiated().unwrap());
    assert!(h.aio_is_negotiating());
    h.opt_go().unwrap();
    check_io(&h);

    // The aio form, with its completion callback; and a server without TLS.
    let plain = pki.sock("plain.sock");
    let _plain = nbdkit_unix(&plain, &[]);
    let h = Handle::new().unwrap();
    h.set_opt_mode(true).unwrap();
    h.connect_unix(&plain).unwrap();
    assert!(!h.opt_starttls().unwrap());
    let seen = Arc::new(AtomicI32::new(-1));
    let seen2 = seen.clone();
    h.aio_opt_starttls(Some(Completion::new(move |err| {
        seen2.store(*err, Ordering::SeqCst);
        1
    })))
    .unwrap();
    while h.aio_is_connecting() {
        h.poll(-1).unwrap();
    }
    assert_eq!(seen.load(Ordering::SeqCst), libc::ENOTSUP);
    assert!(!h.tls_negotiated().unwrap());
    h.opt_go().unwrap();
}

#[test]
fn aio_many_in_flight() {
    if !tools("aio_many_in_flight", false) {
        return;
    }
    let pki = Pki::new("tls-aio");
    let sock = pki.sock("x.sock");
    let certs = pki.certs();
    let _srv = nbdkit_unix(
        &sock,
        &[
            "--tls=require",
            &format!("--tls-certificates={}", s(&certs)),
        ],
    );
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&certs).unwrap();
    h.aio_connect_unix(&sock).unwrap();
    while h.aio_is_connecting() {
        h.poll(-1).unwrap();
    }
    assert!(h.tls_negotiated().unwrap());
    // Many small writes, then many small reads, in flight at once: replies
    // arrive several to a TLS record, so the machine must drain what
    // OpenSSL buffers.
    const N: usize = 256;
    const LEN: usize = 512;
    let data: Vec<u8> = (0..N * LEN).map(|i| (i % 251) as u8).collect();
    let mut cookies = Vec::new();
    for i in 0..N {
        // SAFETY: data outlives the commands, which complete below.
        let c = unsafe {
            h.aio_pwrite(
                data[i * LEN..].as_ptr(),
                LEN,
                (i * LEN) as u64,
                None,
                nbd::CmdFlag::empty(),
            )
        };
        cookies.push(c.unwrap());
    }
    // The server may run requests in flight in any order: a read must not
    // overtake the write of its block, so the writes finish first.
    for c in cookies.drain(..) {
        while !h.aio_command_completed(c as i64).unwrap() {
            h.poll(-1).unwrap();
        }
    }
    let mut back = vec![0u8; N * LEN];
    for i in 0..N {
        // SAFETY: back outlives the commands, which complete below.
        let c = unsafe {
            h.aio_pread(
                back[i * LEN..].as_mut_ptr(),
                LEN,
                (i * LEN) as u64,
                None,
                nbd::CmdFlag::empty(),
            )
        };
        cookies.push(c.unwrap());
    }
    for c in cookies {
        while !h.aio_command_completed(c as i64).unwrap() {
            h.poll(-1).unwrap();
        }
    }
    assert!(back == data);
}

#[test]
fn qemu_nbd_x509() {
    if !tools("qemu_nbd_x509", true) {
        return;
    }
    let pki = Pki::new("tls-qemu-x509");
    let sock = pki.sock("q.sock");
    let certs = pki.certs();
    let object = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=on",
        s(&certs)
    );
    let _srv = qemu_nbd(&sock, &pki, &object);
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&certs).unwrap();
    h.set_tls_hostname("localhost").unwrap();
    h.connect_unix(&sock).unwrap();
    assert!(h.tls_negotiated().unwrap());
    check_io(&h);
    h.shutdown(nbd::Shutdown::empty()).unwrap();
}

#[test]
fn qemu_nbd_psk() {
    if !tools("qemu_nbd_psk", true) {
        return;
    }
    let pki = Pki::new("tls-qemu-psk");
    let sock = pki.sock("q.sock");
    let object = format!(
        "tls-creds-psk,id=tls0,dir={},endpoint=server",
        s(&pki.psk_dir())
    );
    let _srv = qemu_nbd(&sock, &pki, &object);
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_psk_file(pki.psk_file()).unwrap();
    h.set_tls_username("alice").unwrap();
    h.connect_unix(&sock).unwrap();
    assert!(h.tls_negotiated().unwrap());
    check_io(&h);
    h.shutdown(nbd::Shutdown::empty()).unwrap();
}

// ---- how the client ends a TLS session ---------------------------------------

/// What a TLS server saw of the client's end of the session.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// `NBD_CMD_DISC`, then the TLS close_notify alert.
    DiscThenBye,
    /// The close_notify alert with no `NBD_CMD_DISC` before it.
    Bye,
    /// The connection closed without a close_notify.
    Abrupt,
}

/// A TLS server of our own, on `listener`: no real NBD server reports
/// whether a client sent close_notify. It serves one client, with the
/// certificates of `pki`, up to transmission, and then reports how the
/// client ended the TLS session.
fn close_notify_server(
    listener: std::os::unix::net::UnixListener,
    pki: &Pki,
) -> std::thread::JoinHandle<Ending> {
    use crate::proto;
    use openssl::ssl::{ErrorCode, Ssl, SslContext, SslFiletype, SslMethod};
    use std::io::{Read, Write};

    let certs = pki.certs();
    let mut ctx = SslContext::builder(SslMethod::tls_server()).unwrap();
    ctx.set_certificate_file(certs.join("server-cert.pem"), SslFiletype::PEM)
        .unwrap();
    ctx.set_private_key_file(certs.join("server-key.pem"), SslFiletype::PEM)
        .unwrap();
    let ctx = ctx.build();

    fn reply(out: &mut impl Write, option: u32, kind: u32, payload: &[u8]) {
        let mut r = proto::NBD_REP_MAGIC.to_be_bytes().to_vec();
        r.extend_from_slice(&option.to_be_bytes());
        r.extend_from_slice(&kind.to_be_bytes());
        r.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        r.extend_from_slice(payload);
        out.write_all(&r).unwrap();
    }
    /// Reads one option request; returns its number.
    fn option(input: &mut impl Read) -> u32 {
        let mut head = [0u8; 16];
        input.read_exact(&mut head).unwrap();
        assert_eq!(head[..8], proto::NBD_OPTS_MAGIC.to_be_bytes());
        let len = u32::from_be_bytes(head[12..16].try_into().unwrap());
        let mut data = vec![0u8; len as usize];
        input.read_exact(&mut data).unwrap();
        u32::from_be_bytes(head[8..12].try_into().unwrap())
    }

    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut hello = proto::NBD_MAGIC.to_be_bytes().to_vec();
        hello.extend_from_slice(&proto::NBD_OPTS_MAGIC.to_be_bytes());
        hello.extend_from_slice(
            &(proto::NBD_FLAG_FIXED_NEWSTYLE | proto::NBD_FLAG_NO_ZEROES).to_be_bytes(),
        );
        s.write_all(&hello).unwrap();
        let mut cflags = [0u8; 4];
        s.read_exact(&mut cflags).unwrap();
        assert_eq!(option(&mut s), proto::NBD_OPT_STARTTLS);
        reply(&mut s, proto::NBD_OPT_STARTTLS, proto::NBD_REP_ACK, &[]);
        let mut tls = Ssl::new(&ctx).unwrap().accept(s).unwrap();
        loop {
            let opt = option(&mut tls);
            if opt != proto::NBD_OPT_GO {
                reply(&mut tls, opt, proto::NBD_REP_ERR_UNSUP, &[]);
                continue;
            }
            let mut info = proto::NBD_INFO_EXPORT.to_be_bytes().to_vec();
            info.extend_from_slice(&(1u64 << 20).to_be_bytes());
            info.extend_from_slice(&proto::NBD_FLAG_HAS_FLAGS.to_be_bytes());
            reply(&mut tls, opt, proto::NBD_REP_INFO, &info);
            reply(&mut tls, opt, proto::NBD_REP_ACK, &[]);
            break;
        }
        // Transmission: the client sends nothing but NBD_CMD_DISC, if that.
        let mut disc = false;
        let mut request = [0u8; 28];
        let mut got = 0;
        loop {
            match tls.ssl_read(&mut request[got..]) {
                Ok(n) => {
                    got += n;
                    if got == request.len() {
                        let kind = u16::from_be_bytes([request[6], request[7]]);
                        assert_eq!(kind, proto::NBD_CMD_DISC, "unexpected request");
                        disc = true;
                        got = 0;
                    }
                }
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    return if disc {
                        Ending::DiscThenBye
                    } else {
                        Ending::Bye
                    };
                }
                Err(_) => return Ending::Abrupt,
            }
        }
    })
}

#[test]
fn tls_session_ends_with_close_notify() {
    if !tools("tls_session_ends_with_close_notify", false) {
        return;
    }
    let pki = Pki::new("tls-bye");
    for shutdown_first in [true, false] {
        let sock = pki.sock(if shutdown_first { "s.sock" } else { "c.sock" });
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = close_notify_server(listener, &pki);
        let h = Handle::new().unwrap();
        h.set_tls(TLS_REQUIRE).unwrap();
        h.set_tls_certificates(pki.certs()).unwrap();
        h.connect_unix(&sock).unwrap();
        assert!(h.tls_negotiated().unwrap());
        if shutdown_first {
            h.shutdown(nbd::Shutdown::empty()).unwrap();
        }
        drop(h);
        let expected = if shutdown_first {
            Ending::DiscThenBye
        } else {
            Ending::Bye
        };
        assert_eq!(
            server.join().unwrap(),
            expected,
            "shutdown first: {shutdown_first}"
        );
    }
}

// ---- credentials from memory (beyond libnbd) ----------------------------------

/// A client key encrypted with `password` (PKCS#8) and its certificate,
/// signed by the test CA, as PEM: `(cert, key)`.
fn encrypted_client(pki: &Pki, password: &str) -> (Vec<u8>, Vec<u8>) {
    let certs = pki.certs();
    let p = |name: &str| pki.dir.path(name).to_str().unwrap().to_string();
    certtool(&[
        "--generate-privkey",
        "--bits=2048",
        "--pkcs8",
        &format!("--password={password}"),
        "--outfile",
        &p("enc-key.pem"),
    ]);
    std::fs::write(
        pki.dir.path("enc.info"),
        "cn = client\ntls_www_client\nsigning_key\nencryption_key\nexpiration_days = 2\n",
    )
    .unwrap();
    certtool(&[
        "--generate-certificate",
        "--load-ca-certificate",
        s(&certs.join("ca-cert.pem")),
        "--load-ca-privkey",
        s(&certs.join("ca-key.pem")),
        "--load-privkey",
        &p("enc-key.pem"),
        &format!("--password={password}"),
        "--template",
        &p("enc.info"),
        "--outfile",
        &p("enc-cert.pem"),
    ]);
    let key = std::fs::read(pki.dir.path("enc-key.pem")).unwrap();
    assert!(String::from_utf8_lossy(&key).contains("ENCRYPTED"));
    (std::fs::read(pki.dir.path("enc-cert.pem")).unwrap(), key)
}

#[test]
fn x509_credentials_from_memory() {
    if !tools("x509_credentials_from_memory", false) {
        return;
    }
    let pki = Pki::new("tls-mem-x509");
    let certs = pki.certs();
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let ca = read("ca-cert.pem");
    let sock = pki.sock("m.sock");
    let _srv = nbdkit_unix(
        &sock,
        &[
            "--tls=require",
            &format!("--tls-certificates={}", s(&certs)),
        ],
    );
    // The CA from memory; no directory anywhere.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_credentials(nbd::TlsCredentials::new().ca_pem(&ca))
        .unwrap();
    h.connect_unix(&sock).unwrap();
    assert!(h.tls_negotiated().unwrap());
    check_io(&h);
    // The same checks as the files: another CA is refused, and the name
    // is checked when one is set.
    let other = std::fs::read(pki.other_ca().join("ca-cert.pem")).unwrap();
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_credentials(nbd::TlsCredentials::new().ca_pem(&other))
        .unwrap();
    expect_err(
        h.connect_unix(&sock),
        0,
        "certificate verify failed: unable to get local issuer certificate",
    );
    assert!(h.aio_is_dead());
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_credentials(nbd::TlsCredentials::new().ca_pem(&ca))
        .unwrap();
    h.set_tls_hostname("elsewhere.example").unwrap();
    expect_err(h.connect_unix(&sock), 0, "hostname mismatch");
    // Memory wins over a directory set as well.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&certs).unwrap();
    h.set_tls_credentials(nbd::TlsCredentials::new().ca_pem(&other))
        .unwrap();
    expect_err(h.connect_unix(&sock), 0, "certificate verify failed");
    // A CRL from memory revoking the server's certificate.
    std::fs::write(
        pki.dir.path("crl.info"),
        "crl_next_update = 2\ncrl_number = 1\n",
    )
    .unwrap();
    certtool(&[
        "--generate-crl",
        "--load-ca-privkey",
        s(&certs.join("ca-key.pem")),
        "--load-ca-certificate",
        s(&certs.join("ca-cert.pem")),
        "--load-certificate",
        s(&certs.join("server-cert.pem")),
        "--template",
        s(&pki.dir.path("crl.info")),
        "--outfile",
        s(&pki.dir.path("crl.pem")),
    ]);
    let crl = std::fs::read(pki.dir.path("crl.pem")).unwrap();
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_credentials(nbd::TlsCredentials::new().ca_pem(&ca).crl_pem(&crl))
        .unwrap();
    expect_err(
        h.connect_unix(&sock),
        0,
        "certificate verify failed: certificate revoked",
    );
    // Bad PEM is a setup error that names the part.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_credentials(nbd::TlsCredentials::new().ca_pem(b"not pem"))
        .unwrap();
    let e = h.connect_unix(&sock).unwrap_err();
    assert!(e.message().contains("ca-cert.pem (in memory)"), "{e}");
}

#[test]
fn client_certificates_from_memory_and_encrypted_keys() {
    if !tools("client_certificates_from_memory_and_encrypted_keys", false) {
        return;
    }
    let pki = Pki::new("tls-mem-client");
    let certs = pki.certs();
    let ca = std::fs::read(certs.join("ca-cert.pem")).unwrap();
    let sock = pki.sock("v.sock");
    // The server demands a client certificate from our CA.
    let _srv = nbdkit_unix(
        &sock,
        &[
            "--tls=require",
            "--tls-verify-peer",
            &format!("--tls-certificates={}", s(&certs)),
        ],
    );
    let connect = |creds: nbd::TlsCredentials, password: Option<&[u8]>| {
        let h = Handle::new().unwrap();
        h.set_tls(TLS_REQUIRE).unwrap();
        h.set_tls_credentials(creds).unwrap();
        if let Some(pw) = password {
            h.set_tls_key_password(pw).unwrap();
        }
        h.connect_unix(&sock).map(|()| h)
    };
    // Without a client certificate the server refuses.
    assert!(connect(nbd::TlsCredentials::new().ca_pem(&ca), None).is_err());
    // A plain key.
    let cert = std::fs::read(certs.join("client-cert.pem")).unwrap();
    let key = std::fs::read(certs.join("client-key.pem")).unwrap();
    let h = connect(
        nbd::TlsCredentials::new()
            .ca_pem(&ca)
            .client_pem(&cert, &key),
        None,
    )
    .unwrap();
    check_io(&h);
    // An encrypted key: the right password, a wrong one, none.
    let (cert, key) = encrypted_client(&pki, "s3cret");
    let creds = || {
        nbd::TlsCredentials::new()
            .ca_pem(&ca)
            .client_pem(&cert, &key)
    };
    let h = connect(creds(), Some(b"s3cret")).unwrap();
    check_io(&h);
    for password in [Some(&b"wrong"[..]), None] {
        let e = connect(creds(), password).expect_err("connect should fail");
        assert!(e.message().contains("client-key.pem (in memory)"), "{e}");
    }
    // The password also opens an encrypted client-key.pem in a directory.
    let dir = pki.dir.path("enc-dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca-cert.pem"), &ca).unwrap();
    std::fs::write(dir.join("client-cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("client-key.pem"), &key).unwrap();
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&dir).unwrap();
    h.set_tls_key_password(b"s3cret").unwrap();
    h.connect_unix(&sock).unwrap();
    check_io(&h);
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_certificates(&dir).unwrap();
    let e = h.connect_unix(&sock).unwrap_err();
    assert!(e.message().contains("client-key.pem"), "{e}");
}

#[test]
fn psk_from_memory() {
    if !tools("psk_from_memory", false) {
        return;
    }
    let pki = Pki::new("tls-mem-psk");
    let sock = pki.sock("p.sock");
    let _srv = nbdkit_unix(
        &sock,
        &[
            "--tls=require",
            &format!("--tls-psk={}", s(&pki.psk_file())),
        ],
    );
    let key: Vec<u8> = (0..32)
        .map(|i| {
            u8::from_str_radix(
                &"8e1f6b1b0a9d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80910"
                    [i * 2..i * 2 + 2],
                16,
            )
            .unwrap()
        })
        .collect();
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_psk("alice", &key).unwrap();
    assert_eq!(h.tls_username().unwrap(), "alice");
    h.connect_unix(&sock).unwrap();
    assert!(h.tls_negotiated().unwrap());
    check_io(&h);
    // A wrong key fails the handshake; a PSK server is never trusted on
    // a certificate instead.
    let h = Handle::new().unwrap();
    h.set_tls(TLS_REQUIRE).unwrap();
    h.set_tls_psk("alice", &[0x11; 16]).unwrap();
    expect_err(h.connect_unix(&sock), 0, "TLS handshake: ");
    assert!(h.aio_is_dead());
    let h = Handle::new().unwrap();
    assert_eq!(
        h.set_tls_psk("alice", &[]).unwrap_err().errno(),
        libc::EINVAL
    );
}
