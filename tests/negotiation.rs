//! Option negotiation, meta contexts, block status and header styles,
//! against real servers: qemu-nbd serving a qcow2 with holes and a dirty
//! bitmap (extended headers), nbd-server with several exports, and nbdkit
//! with filters that change what it advertises.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{have, nbdkit, nbdkit_on, run, Server, TempDir};
use nbd::{Context, Extent, Extent64Cb, Handle, List};

const MIB: u64 = 1024 * 1024;
const STATE_HOLE_ZERO: u64 = 3;

type Extents = BTreeMap<String, Vec<(u64, u64)>>;

/// Every context's extents for `count` bytes at 0, through the 64-bit call.
fn extents64(h: &Handle, count: u64) -> Extents {
    let seen = Arc::new(Mutex::new(Extents::new()));
    let s = seen.clone();
    let cb = Extent64Cb::new(move |ctx, offset, entries, _err| {
        assert_eq!(offset, 0);
        let mut s = s.lock().unwrap();
        let v = s.entry(ctx.to_string()).or_default();
        v.extend(entries.iter().map(|e| (e.length, e.flags)));
        0
    });
    h.block_status_64(count, 0, cb, nbd::CmdFlag::empty())
        .expect("block_status_64");
    let out = seen.lock().unwrap().clone();
    out
}

/// The same through the 32-bit call.
fn extents32(h: &Handle, count: u64) -> Extents {
    let seen = Arc::new(Mutex::new(Extents::new()));
    let s = seen.clone();
    let cb = Extent::new(move |ctx, _offset, entries, _err| {
        assert_eq!(entries.len() % 2, 0);
        let mut s = s.lock().unwrap();
        let v = s.entry(ctx.to_string()).or_default();
        v.extend(entries.chunks(2).map(|p| (p[0] as u64, p[1] as u64)));
        0
    });
    h.block_status(count, 0, cb, nbd::CmdFlag::empty())
        .expect("block_status");
    let out = seen.lock().unwrap().clone();
    out
}

/// A qcow2 of 8 MiB: data at 1 MiB (128 KiB) and at 4 MiB (64 KiB), the
/// second written after bitmap `b0` was added, so only it is dirty.
fn qcow2_with_holes_and_bitmap(dir: &TempDir) -> String {
    let img = dir.path("disk.qcow2").display().to_string();
    run("qemu-img", &["create", "-q", "-f", "qcow2", &img, "8M"]);
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x11 1M 128k", &img],
    );
    run("qemu-img", &["bitmap", "--add", "-f", "qcow2", &img, "b0"]);
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x22 4M 64k", &img],
    );
    img
}

fn qemu_nbd(dir: &TempDir, img: &str) -> (Server, String) {
    let sock = dir.path("nbd.sock").display().to_string();
    let s = sock.clone();
    let server = Server::start(
        "qemu-nbd",
        &["-f", "qcow2", "-k", &sock, "-t", "-B", "b0", "-A", img],
        move || std::path::Path::new(&s).exists(),
    );
    (server, sock)
}

fn connect_with_contexts(sock: &str, setup: impl Fn(&Handle)) -> Handle {
    let h = Handle::new().unwrap();
    for ctx in [
        "base:allocation",
        "qemu:dirty-bitmap:b0",
        "qemu:allocation-depth",
    ] {
        h.add_meta_context(ctx).unwrap();
    }
    setup(&h);
    h.connect_unix(sock).expect("connect to qemu-nbd");
    h
}

fn check_qcow2_extents(e: &Extents) {
    assert_eq!(
        e["base:allocation"],
        vec![
            (MIB, STATE_HOLE_ZERO),
            (128 * 1024, 0),
            (3 * MIB - 128 * 1024, STATE_HOLE_ZERO),
            (64 * 1024, 0),
            (4 * MIB - 64 * 1024, STATE_HOLE_ZERO),
        ]
    );
    assert_eq!(
        e["qemu:dirty-bitmap:b0"],
        vec![(4 * MIB, 0), (64 * 1024, 1), (4 * MIB - 64 * 1024, 0)]
    );
    assert_eq!(
        e["qemu:allocation-depth"],
        vec![
            (MIB, 0),
            (128 * 1024, 1),
            (3 * MIB - 128 * 1024, 0),
            (64 * 1024, 1),
            (4 * MIB - 64 * 1024, 0),
        ]
    );
}

#[test]
fn qemu_nbd_extended_headers_block_status() {
    if !have("qemu-nbd", "qemu_nbd_extended_headers_block_status") {
        return;
    }
    let dir = TempDir::new("qemu-eh");
    let img = qcow2_with_holes_and_bitmap(&dir);
    let (_server, sock) = qemu_nbd(&dir, &img);

    // Defaults: extended headers (qemu-nbd 10 has them), so structured too.
    let h = connect_with_contexts(&sock, |_| {});
    assert!(h.extended_headers_negotiated().unwrap());
    assert!(h.structured_replies_negotiated().unwrap());
    assert_eq!(h.protocol().unwrap(), "newstyle-fixed");
    for ctx in [
        "base:allocation",
        "qemu:dirty-bitmap:b0",
        "qemu:allocation-depth",
    ] {
        assert!(h.can_meta_context(ctx).unwrap(), "{ctx}");
    }
    assert!(!h.can_meta_context("qemu:dirty-bitmap:nope").unwrap());
    check_qcow2_extents(&extents64(&h, 8 * MIB));
    check_qcow2_extents(&extents32(&h, 8 * MIB));

    // Filtered block status: only the contexts asked for come back.
    assert!(h.can_block_status_payload().unwrap());
    let seen = Arc::new(Mutex::new(Extents::new()));
    let s = seen.clone();
    let cb = Extent64Cb::new(move |ctx, _, entries, _| {
        let mut s = s.lock().unwrap();
        let v = s.entry(ctx.to_string()).or_default();
        v.extend(entries.iter().map(|e| (e.length, e.flags)));
        0
    });
    h.block_status_filter(
        8 * MIB,
        0,
        &["qemu:dirty-bitmap:b0"],
        cb,
        nbd::CmdFlag::empty(),
    )
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["qemu:dirty-bitmap:b0"]);
    assert_eq!(seen["qemu:dirty-bitmap:b0"][1], (64 * 1024, 1));
    let cb = Extent64Cb::new(|_, _, _, _| panic!("not sent"));
    let err = h
        .block_status_filter(
            MIB,
            0,
            &["qemu:dirty-bitmap:nope"],
            cb,
            nbd::CmdFlag::empty(),
        )
        .unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL);
    assert_eq!(
        err.message(),
        "context qemu:dirty-bitmap:nope not negotiated"
    );

    let mut buf = vec![0u8; 256 * 1024];
    h.pread(&mut buf, MIB, nbd::CmdFlag::empty()).unwrap();
    assert!(buf[..128 * 1024].iter().all(|&b| b == 0x11));
    assert!(buf[128 * 1024..].iter().all(|&b| b == 0));
    h.shutdown(nbd::Shutdown::empty()).unwrap();
    drop(h);

    // Without extended headers: structured replies, 32-bit block status.
    let h = connect_with_contexts(&sock, |h| h.set_request_extended_headers(false).unwrap());
    assert!(!h.extended_headers_negotiated().unwrap());
    assert!(h.structured_replies_negotiated().unwrap());
    check_qcow2_extents(&extents64(&h, 8 * MIB));
    check_qcow2_extents(&extents32(&h, 8 * MIB));
    let cb = Extent64Cb::new(|_, _, _, _| panic!("not sent"));
    let err = h
        .block_status_filter(MIB, 0, &["base:allocation"], cb, nbd::CmdFlag::empty())
        .unwrap_err();
    assert_eq!(err.errno(), libc::ENOTSUP);
    assert_eq!(err.message(), "server does not support extended headers");
    // qemu-nbd serves one client at a time: let this one go.
    drop(h);

    // Neither: simple replies; block status is refused before sending.
    let h = connect_with_contexts(&sock, |h| {
        h.set_request_extended_headers(false).unwrap();
        h.set_request_structured_replies(false).unwrap();
    });
    assert!(!h.structured_replies_negotiated().unwrap());
    assert!(!h.extended_headers_negotiated().unwrap());
    let cb = Extent::new(|_, _, _, _| panic!("no block status without structured replies"));
    let err = h
        .block_status(MIB, 0, cb, nbd::CmdFlag::empty())
        .unwrap_err();
    assert_eq!(err.errno(), libc::ENOTSUP);
    assert_eq!(err.message(), "server does not support structured replies");
    h.pread(&mut buf, 4 * MIB, nbd::CmdFlag::empty()).unwrap();
    assert!(buf[..64 * 1024].iter().all(|&b| b == 0x22));
}

#[test]
fn qemu_nbd_option_mode_meta_queries() {
    if !have("qemu-nbd", "qemu_nbd_option_mode_meta_queries") {
        return;
    }
    let dir = TempDir::new("qemu-opt");
    let img = qcow2_with_holes_and_bitmap(&dir);
    let (_server, sock) = qemu_nbd(&dir, &img);

    let h = Handle::new().unwrap();
    h.set_opt_mode(true).unwrap();
    h.connect_unix(&sock).unwrap();
    assert!(h.aio_is_negotiating());
    // qemu-nbd answers the automatic NBD_OPT_EXTENDED_HEADERS.
    assert!(h.extended_headers_negotiated().unwrap());

    let listed = Arc::new(Mutex::new(Vec::new()));
    let l = listed.clone();
    let n = h
        .opt_list_meta_context_queries(
            &["qemu:"],
            Context::new(move |name| {
                l.lock().unwrap().push(name.to_string());
                0
            }),
        )
        .unwrap();
    let mut listed = listed.lock().unwrap().clone();
    listed.sort();
    assert_eq!(n as usize, listed.len());
    assert_eq!(listed, ["qemu:allocation-depth", "qemu:dirty-bitmap:b0"]);

    let n = h
        .opt_set_meta_context_queries(&["base:allocation"], Context::new(|_| 0))
        .unwrap();
    assert_eq!(n, 1);
    h.opt_go().unwrap();
    assert!(h.aio_is_ready());
    assert!(h.can_meta_context("base:allocation").unwrap());
    assert!(!h.can_meta_context("qemu:dirty-bitmap:b0").unwrap());
    let e = extents64(&h, 8 * MIB);
    assert_eq!(e.len(), 1);
    assert_eq!(e["base:allocation"][1], (128 * 1024, 0));
}

#[test]
fn nbd_server_lists_several_exports() {
    if !have("nbd-server", "nbd_server_lists_several_exports") {
        return;
    }
    let dir = TempDir::new("nbd-server-list");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut conf = format!("[generic]\nport = {port}\nlistenaddr = 127.0.0.1\nallowlist = true\n");
    for (name, size) in [("red", 65536), ("green", 131072), ("blue", 196608)] {
        let path = dir.path(&format!("{name}.img"));
        std::fs::write(&path, vec![0u8; size]).unwrap();
        conf += &format!("[{name}]\nexportname = {}\n", path.display());
    }
    let conf_path = dir.path("config");
    std::fs::write(&conf_path, conf).unwrap();
    // nbd-server forks a process per client (so the readiness probe does
    // not use up the one client of -d mode); -p names its pid file.
    let pidfile = dir.path("pid");
    run(
        "nbd-server",
        &[
            "-C",
            &conf_path.display().to_string(),
            "-p",
            &pidfile.display().to_string(),
        ],
    );
    let _daemon = common::Daemon(pidfile.clone());
    common::wait_until("nbd-server", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| !s.trim().is_empty())
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let h = Handle::new().unwrap();
    h.set_opt_mode(true).unwrap();
    h.connect_tcp("127.0.0.1", &port.to_string()).unwrap();
    let names = Arc::new(Mutex::new(Vec::new()));
    let n2 = names.clone();
    let count = h
        .opt_list(List::new(move |name, _desc| {
            n2.lock().unwrap().push(name.to_string());
            0
        }))
        .unwrap();
    let mut names = names.lock().unwrap().clone();
    names.sort();
    assert_eq!(count, 3);
    assert_eq!(names, ["blue", "green", "red"]);
    // nbd-server accepts NBD_OPT_INFO for each export.
    for name in ["red", "green", "blue"] {
        h.set_export_name(name.as_bytes()).unwrap();
        h.opt_info().unwrap();
        assert!(h.aio_is_negotiating());
    }
    h.set_export_name(b"nosuch").unwrap();
    let err = h.opt_go().unwrap_err();
    // libnbd's words for the refusal, then the server's message.
    assert_eq!(
        err.message(),
        "the server has no export named 'nosuch': Export unknown"
    );
    assert_eq!(err.errno(), libc::ENOENT);
    assert!(h.aio_is_negotiating());
    h.set_export_name(b"green").unwrap();
    h.opt_go().unwrap();
    assert_eq!(h.size().unwrap(), 131072);
    let mut buf = [1u8; 512];
    h.pread(&mut buf, 0, nbd::CmdFlag::empty()).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn nbdkit_filters_change_advertised_flags() {
    let h = nbdkit(&["memory", "1M"]);
    assert!(h.can_zero().unwrap() && h.can_trim().unwrap() && h.can_fua().unwrap());

    let dir = TempDir::new("nbdkit-log");
    let log = dir.path("log").display().to_string();
    let logfile = format!("logfile={log}");
    // A writable server with flush but neither FUA nor write-zeroes.
    let h = nbdkit(&[
        "--filter=log",
        "--filter=nozero",
        "eval",
        "get_size=echo 1048576",
        "pread=dd if=/dev/zero count=$3 iflag=count_bytes status=none",
        "pwrite=cat >/dev/null",
        "can_write=exit 0",
        "can_flush=exit 0",
        "flush=exit 0",
        "can_fua=echo none",
        "zeromode=none",
        &logfile,
    ]);
    assert!(!h.can_zero().unwrap());
    assert!(!h.can_fua().unwrap());
    // Refused on our side, with nothing sent to the server.
    let e = h.zero(4096, 0, nbd::CmdFlag::empty()).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert_eq!(e.message(), "server does not support zero operations");
    let e = h
        .pwrite(
            &[0u8; 512],
            0,
            nbd::CmdFlag::from_bits_retain(nbd_flags::FUA),
        )
        .unwrap_err();
    assert_eq!(e.message(), "server does not support the FUA flag");
    let e = h
        .pread(&mut [0u8; 512], 1024 * 1024, nbd::CmdFlag::empty())
        .unwrap_err();
    assert_eq!(e.message(), "request out of bounds");
    h.flush(nbd::CmdFlag::empty()).unwrap();
    h.shutdown(nbd::Shutdown::empty()).unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(" Flush id="),
        "the log filter works: {logged}"
    );
    // The log filter names each request: " Read id=", " Write id=" ...
    assert!(
        !logged.contains(" Zero id="),
        "a refused zero was sent: {logged}"
    );
    assert!(
        !logged.contains(" Write id="),
        "a refused write was sent: {logged}"
    );
    assert!(
        !logged.contains(" Read id="),
        "a refused read was sent: {logged}"
    );
}

mod nbd_flags {
    pub const FUA: u32 = 1;
}

#[test]
fn protocol_and_reply_style_in_each_combination() {
    // Fixed newstyle, structured replies (nbdkit 1.32 has no extended headers).
    let h = nbdkit(&["memory", "1M"]);
    assert_eq!(h.protocol().unwrap(), "newstyle-fixed");
    assert!(h.structured_replies_negotiated().unwrap());
    assert!(!h.extended_headers_negotiated().unwrap());

    // The server refuses structured replies.
    let h = nbdkit(&["--no-sr", "memory", "1M"]);
    assert_eq!(h.protocol().unwrap(), "newstyle-fixed");
    assert!(!h.structured_replies_negotiated().unwrap());
    h.pwrite(&[7u8; 4096], 0, nbd::CmdFlag::empty()).unwrap();
    let mut b = [0u8; 4096];
    h.pread(&mut b, 0, nbd::CmdFlag::empty()).unwrap();
    assert_eq!(b, [7u8; 4096]);

    // We do not ask for them.
    let h = Handle::new().unwrap();
    h.set_request_structured_replies(false).unwrap();
    h.set_request_extended_headers(false).unwrap();
    nbdkit_on(&h, &["memory", "1M"]);
    assert!(!h.structured_replies_negotiated().unwrap());

    // Oldstyle.
    let h = nbdkit(&["-o", "memory", "1M"]);
    assert_eq!(h.protocol().unwrap(), "oldstyle");
    assert!(!h.structured_replies_negotiated().unwrap());
    assert_eq!(h.size().unwrap(), 1024 * 1024);

    // Newstyle without the fixed bit: only NBD_OPT_EXPORT_NAME.
    let h = nbdkit(&["--mask-handshake=0", "memory", "1M"]);
    assert_eq!(h.protocol().unwrap(), "newstyle");
    assert!(!h.structured_replies_negotiated().unwrap());
    h.pread(&mut b, 0, nbd::CmdFlag::empty()).unwrap();

    // Option mode against a server without fixed newstyle: the handle
    // stops negotiating (as libnbd 1.22), where only opt_go (sending
    // NBD_OPT_EXPORT_NAME) and opt_abort work.
    let h = Handle::new().unwrap();
    h.set_opt_mode(true).unwrap();
    nbdkit_on(&h, &["--mask-handshake=0", "memory", "1M"]);
    assert!(h.aio_is_negotiating());
    assert_eq!(h.opt_info().unwrap_err().errno(), libc::ENOTSUP);
    h.opt_go().unwrap();
    assert!(h.aio_is_ready());
    assert_eq!(h.size().unwrap(), 1024 * 1024);
}
