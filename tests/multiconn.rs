//! MultiConn: several connections to one export used as one handle, against
//! real nbdkit servers on Unix sockets.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{have, nbdkit_unix, seeded_pattern, TempDir};
use nbd::{Handle, MultiConn};

const MIB: usize = 1024 * 1024;

fn fresh_handle(sock: &Path) -> Handle {
    let h = Handle::new().unwrap();
    h.connect_unix(sock).unwrap();
    h
}

#[test]
fn opens_n_connections_when_server_allows_multi_conn() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    let dir = TempDir::new("mc-n");
    let (_server, sock) = nbdkit_unix(&dir, &["memory", "64M"]);
    let mut made = Vec::new();
    let mc = MultiConn::builder()
        .connections(3)
        .connect(|i| {
            made.push(i);
            let h = Handle::new()?;
            h.connect_unix(&sock)?;
            Ok(h)
        })
        .unwrap();
    assert_eq!(made, vec![0, 1, 2]);
    assert_eq!(mc.connections(), 3);
    assert!(mc.can_multi_conn().unwrap());
    assert_eq!(mc.size(), 64 * MIB as u64);
    for i in 0..3 {
        assert!(mc.handle(i).unwrap().aio_is_ready());
    }
    assert!(mc.handle(3).is_none());
    mc.shutdown(nbd::Shutdown::empty()).unwrap();
    assert!(mc.handle(0).unwrap().aio_is_closed());
}

#[test]
fn opens_one_connection_without_multi_conn() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    let dir = TempDir::new("mc-one");
    let (_server, sock) = nbdkit_unix(
        &dir,
        &[
            "--filter=multi-conn",
            "memory",
            "16M",
            "multi-conn-mode=disable",
        ],
    );
    let mut calls = 0;
    let mc = MultiConn::builder()
        .connections(4)
        .connect(|_| {
            calls += 1;
            let h = Handle::new()?;
            h.connect_unix(&sock)?;
            Ok(h)
        })
        .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(mc.connections(), 1);
    assert!(!mc.can_multi_conn().unwrap());
    // A large write is still split (pipelined on the one connection).
    let data = seeded_pattern(5 * MIB + 4096, 8192, 7);
    mc.pwrite(&data, 8192, nbd::CmdFlag::empty()).unwrap();
    mc.flush(nbd::CmdFlag::empty()).unwrap();
    let mut back = vec![0; data.len()];
    mc.pread(&mut back, 8192, nbd::CmdFlag::empty()).unwrap();
    assert!(back == data);
}

#[test]
fn bad_connection_counts_and_connect_errors() {
    let e = MultiConn::connect(0, |_| Handle::new()).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    let e = MultiConn::connect(17, |_| Handle::new()).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    // A handle that is not connected is refused.
    let e = MultiConn::connect(2, |_| Handle::new()).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(e.message().contains("not ready"), "{e}");
    // connect's own error comes back as it is.
    let e = MultiConn::connect_uri(2, "nbd+unix:///?socket=/nonexistent/sock").unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
}

#[test]
fn large_and_small_writes_read_back_through_pool_and_fresh_handle() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    let dir = TempDir::new("mc-data");
    let (_server, sock) = nbdkit_unix(&dir, &["memory", "64M"]);
    let mc = MultiConn::builder()
        .connections(4)
        .max_chunk(256 * 1024)
        .connect_unix(&sock)
        .unwrap();
    assert_eq!(mc.connections(), 4);
    assert_eq!(mc.max_chunk(), 256 * 1024);

    // Large writes (split into 256 KiB chunks over 4 connections), one
    // with a length that is not a multiple of anything.
    let big = seeded_pattern(20 * MIB, 0, 1);
    mc.pwrite(&big, 0, nbd::CmdFlag::empty()).unwrap();
    let odd_off = 30 * MIB as u64 + 123;
    let odd = seeded_pattern(3 * MIB + 4321, odd_off, 2);
    mc.pwrite(&odd, odd_off, nbd::CmdFlag::empty()).unwrap();
    // Small writes, one connection each, some over the big one.
    for k in 0..64u64 {
        let off = k * 300_007 % (20 * MIB as u64 - 512);
        mc.pwrite(&seeded_pattern(512, off, 3), off, nbd::CmdFlag::empty())
            .unwrap();
    }
    // FUA writes, split and not.
    let fua_off = 40 * MIB as u64;
    let fua = seeded_pattern(2 * MIB, fua_off, 4);
    mc.pwrite(&fua, fua_off, nbd::CmdFlag::FUA).unwrap();
    mc.zero(MIB as u64, 50 * MIB as u64, nbd::CmdFlag::empty())
        .unwrap();
    mc.trim(4096, 51 * MIB as u64, nbd::CmdFlag::empty())
        .unwrap();
    mc.cache(4096, 0, nbd::CmdFlag::empty()).unwrap();
    mc.flush(nbd::CmdFlag::empty()).unwrap();

    let mut expect = big.clone();
    for k in 0..64u64 {
        let off = k * 300_007 % (20 * MIB as u64 - 512);
        expect[off as usize..off as usize + 512].copy_from_slice(&seeded_pattern(512, off, 3));
    }

    // Through the pool: one large read, and small ones.
    let mut back = vec![0xaa; expect.len()];
    mc.pread(&mut back, 0, nbd::CmdFlag::empty()).unwrap();
    assert!(back == expect, "large read through the pool differs");
    for k in 0..50u64 {
        let off = k * 411_001 % (20 * MIB as u64 - 4096);
        let mut small = vec![0; 4096];
        mc.pread(&mut small, off, nbd::CmdFlag::empty()).unwrap();
        assert!(small[..] == expect[off as usize..off as usize + 4096]);
    }
    let mut back = vec![0; odd.len()];
    mc.pread(&mut back, odd_off, nbd::CmdFlag::empty()).unwrap();
    assert!(back == odd);

    // Through a fresh handle, in 1 MiB reads.
    let h = fresh_handle(&sock);
    let check = |off: u64, want: &[u8]| {
        for (i, piece) in want.chunks(MIB).enumerate() {
            let mut got = vec![0; piece.len()];
            h.pread(&mut got, off + (i * MIB) as u64, nbd::CmdFlag::empty())
                .unwrap();
            assert!(got == piece, "fresh handle: differs at {off}+{i} MiB");
        }
    };
    check(0, &expect);
    check(odd_off, &odd);
    check(fua_off, &fua);
    let mut z = vec![1; MIB];
    h.pread(&mut z, 50 * MIB as u64, nbd::CmdFlag::empty())
        .unwrap();
    assert!(z.iter().all(|&b| b == 0));

    // Out of bounds is refused whole, before any chunk goes out.
    let tail = 64 * MIB as u64 - MIB as u64;
    let e = mc
        .pwrite(&vec![9; 2 * MIB], tail, nbd::CmdFlag::empty())
        .unwrap_err();
    assert_eq!(e.errno(), libc::ENOSPC);
    let mut last = vec![0; 4096];
    h.pread(&mut last, tail, nbd::CmdFlag::empty()).unwrap();
    assert!(last.iter().all(|&b| b == 0), "a refused write wrote data");
    let e = mc
        .pread(&mut vec![0; 2 * MIB], tail, nbd::CmdFlag::empty())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(mc.fatal_error().is_none());
}

#[test]
fn larger_than_one_command_allows() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    // A single Handle refuses reads over 64 MiB (ERANGE); the pool splits.
    let dir = TempDir::new("mc-huge");
    let (_server, sock) = nbdkit_unix(&dir, &["pattern", "200M"]);
    let mc = MultiConn::connect_uri(2, &format!("nbd+unix:///?socket={}", sock.display())).unwrap();
    let mut buf = vec![0; 100 * MIB];
    let e = mc
        .handle(0)
        .unwrap()
        .pread(&mut buf, 0, nbd::CmdFlag::empty())
        .unwrap_err();
    assert_eq!(e.errno(), libc::ERANGE);
    mc.pread(&mut buf, 8 * MIB as u64, nbd::CmdFlag::empty())
        .unwrap();
    // nbdkit pattern: each 8-byte word is its own offset, big-endian.
    for (i, w) in buf.chunks(8).enumerate().step_by(4099) {
        let want = 8 * MIB as u64 + 8 * i as u64;
        assert_eq!(u64::from_be_bytes(w.try_into().unwrap()), want);
    }
}

#[test]
fn many_threads_share_one_pool() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    const THREADS: usize = 8;
    const REGION: usize = 6 * MIB;
    let dir = TempDir::new("mc-mt");
    let (_server, sock) = nbdkit_unix(&dir, &["memory", "64M"]);
    let mc = Arc::new(
        MultiConn::builder()
            .connections(3)
            .max_chunk(512 * 1024)
            .connect_unix(&sock)
            .unwrap(),
    );
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let mc = Arc::clone(&mc);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let base = (t * REGION) as u64;
                let seed = t as u8 + 10;
                barrier.wait();
                for round in 0..4u64 {
                    // One big split write over the region, then small writes
                    // and reads mixed with big reads, all verified.
                    let data = seeded_pattern(REGION, base, seed ^ round as u8);
                    mc.pwrite(&data, base, nbd::CmdFlag::empty()).unwrap();
                    let mut want = data;
                    for k in 0..40u64 {
                        let off = (k * 65_537 + round * 4096) % (REGION as u64 - 8192);
                        let small = seeded_pattern(8192, base + off, seed ^ 0x55);
                        mc.pwrite(&small, base + off, nbd::CmdFlag::empty())
                            .unwrap();
                        want[off as usize..off as usize + 8192].copy_from_slice(&small);
                        let mut got = vec![0; 4096];
                        mc.pread(&mut got, base + off + 4096, nbd::CmdFlag::empty())
                            .unwrap();
                        assert!(got[..] == want[off as usize + 4096..off as usize + 8192]);
                    }
                    if t % 2 == 0 {
                        mc.flush(nbd::CmdFlag::empty()).unwrap();
                    }
                    let mut got = vec![0; REGION];
                    mc.pread(&mut got, base, nbd::CmdFlag::empty()).unwrap();
                    assert!(got == want, "thread {t} round {round}: data differs");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    mc.flush(nbd::CmdFlag::empty()).unwrap();
    // Every connection was used.
    for i in 0..3 {
        let h = mc.handle(i).unwrap();
        assert!(
            h.stats_bytes_sent() > 10 * MIB as u64,
            "connection {i} idle"
        );
    }
}

#[test]
fn flush_waits_for_writes_in_flight() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    // Each write command takes 1 s on the server; the flush is asked for
    // while a split write is in flight and must not finish before it.
    let dir = TempDir::new("mc-flush");
    let (_server, sock) = nbdkit_unix(&dir, &["--filter=delay", "memory", "16M", "wdelay=1"]);
    let mc = Arc::new(
        MultiConn::builder()
            .connections(2)
            .max_chunk(MIB as u64)
            .connect_unix(&sock)
            .unwrap(),
    );
    let writer = {
        let mc = Arc::clone(&mc);
        std::thread::spawn(move || {
            mc.pwrite(&seeded_pattern(4 * MIB, 0, 9), 0, nbd::CmdFlag::empty())
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    mc.flush(nbd::CmdFlag::empty()).unwrap();
    // The write's chunks take 1 s from about 0.3 s before the flush began;
    // a flush that did not wait would take milliseconds.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "flush took only {took:?}"
    );
    writer.join().unwrap();
    let mut back = vec![0; 4 * MIB];
    fresh_handle(&sock)
        .pread(&mut back, 0, nbd::CmdFlag::empty())
        .unwrap();
    assert!(back == seeded_pattern(4 * MIB, 0, 9));
}

#[test]
fn killed_server_gives_an_error_not_a_hang() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    let dir = TempDir::new("mc-kill");
    let (mut server, sock) = nbdkit_unix(&dir, &["--filter=delay", "pattern", "1G", "rdelay=50ms"]);
    let mc = Arc::new(
        MultiConn::builder()
            .connections(4)
            .max_chunk(MIB as u64)
            .connect_unix(&sock)
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let mc = Arc::clone(&mc);
            let tx = tx.clone();
            std::thread::spawn(move || {
                // Thread 0 splits; the others use one connection at a time.
                let len = if t == 0 { 16 * MIB } else { 64 * 1024 };
                let mut buf = vec![0; len];
                let mut off = 0u64;
                let err = loop {
                    if let Err(e) = mc.pread(&mut buf, off, nbd::CmdFlag::empty()) {
                        break e;
                    }
                    off = (off + len as u64) % (512 * MIB as u64);
                };
                tx.send(err).unwrap();
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let errors: Vec<nbd::Error> = (0..3)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(20))
                .expect("a reader hung after the server was killed")
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    // Each reader got the error of the connection that died first, and
    // from now on every call fails with it.
    let fatal = mc.fatal_error().expect("no fatal error recorded").clone();
    for e in &errors {
        assert_eq!(e, &fatal);
    }
    let e = mc
        .pread(&mut [0; 512], 0, nbd::CmdFlag::empty())
        .unwrap_err();
    assert_eq!(e, fatal);
    let e = mc.flush(nbd::CmdFlag::empty()).unwrap_err();
    assert_eq!(e, fatal);
}

#[test]
fn connections_to_different_exports_are_refused() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    let dir_a = TempDir::new("mc-diff-a");
    let dir_b = TempDir::new("mc-diff-b");
    let (_a, sock_a) = nbdkit_unix(&dir_a, &["memory", "16M"]);
    let (_b, sock_b) = nbdkit_unix(&dir_b, &["memory", "32M"]);
    let e = MultiConn::connect(2, |i| {
        let h = Handle::new()?;
        h.connect_unix(if i == 0 { &sock_a } else { &sock_b })?;
        Ok(h)
    })
    .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(e.message().contains("connection 1"), "{e}");
}

#[test]
fn read_only_export_refuses_split_writes_whole() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    let dir = TempDir::new("mc-ro");
    let (_server, sock) = nbdkit_unix(&dir, &["-r", "pattern", "16M"]);
    let mc = MultiConn::builder()
        .connections(2)
        .connect_unix(&sock)
        .unwrap();
    assert_eq!(mc.connections(), 2);
    assert!(mc.is_read_only().unwrap());
    let e = mc
        .pwrite(&vec![0; 4 * MIB], 0, nbd::CmdFlag::empty())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EPERM, "{e}");
    let e = mc.pwrite(&[0; 512], 0, nbd::CmdFlag::empty()).unwrap_err();
    assert_eq!(e.errno(), libc::EPERM, "{e}");
    // Not a dead connection: the pool goes on.
    assert!(mc.fatal_error().is_none());
    let mut buf = vec![0; 4 * MIB];
    mc.pread(&mut buf, 0, nbd::CmdFlag::empty()).unwrap();
    assert_eq!(
        u64::from_be_bytes(buf[4 * MIB - 8..].try_into().unwrap()),
        4 * MIB as u64 - 8
    );
}

#[test]
fn split_and_whole_requests_share_connections_without_stalling() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    // Threads mixing split reads with whole small reads on the same two
    // connections (replies to one thread's chunks are often read by
    // another thread), data checked, with a watchdog: no thread stalls.
    const THREADS: usize = 6;
    let dir = TempDir::new("mc-wake");
    let (_server, sock) = nbdkit_unix(&dir, &["pattern", "64M"]);
    let mc = Arc::new(
        MultiConn::builder()
            .connections(2)
            .max_chunk(64 * 1024)
            .split_threshold(128 * 1024)
            .connect_unix(&sock)
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    for t in 0..THREADS {
        let mc = Arc::clone(&mc);
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut big = vec![0; 512 * 1024];
            let mut small = vec![0; 4096];
            for i in 0..300u64 {
                let off = ((i * 7 + t as u64) * 4096 * 33) % (60 * MIB as u64);
                let r = if (i + t as u64) % 2 == 0 {
                    mc.pread(&mut big, off, nbd::CmdFlag::empty())
                        .map(|()| &big[..])
                } else {
                    mc.pread(&mut small, off, nbd::CmdFlag::empty())
                        .map(|()| &small[..])
                };
                let buf = r.unwrap();
                let last = buf.len() - 8;
                assert_eq!(u64::from_be_bytes(buf[..8].try_into().unwrap()), off);
                let w = u64::from_be_bytes(buf[last..].try_into().unwrap());
                assert_eq!(w, off + last as u64);
            }
            tx.send(()).unwrap();
        });
    }
    for _ in 0..THREADS {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("a thread stalled (or failed)");
    }
}

#[test]
fn tls_connections_made_by_the_callers_closure() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    // The closure sets TLS up; the pool then drives the TLS connections
    // with its own poll loop for split requests.
    let dir = TempDir::new("mc-tls");
    let psk = dir.path("keys.psk");
    std::fs::write(
        &psk,
        "alice:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
    )
    .unwrap();
    let psk_arg = format!("--tls-psk={}", psk.display());
    let (_server, sock) = nbdkit_unix(&dir, &["--tls=require", &psk_arg, "memory", "32M"]);
    let mc = MultiConn::builder()
        .connections(3)
        .max_chunk(128 * 1024)
        .connect(|_| {
            let h = Handle::new()?;
            h.set_tls(nbd::Tls::Require)?;
            h.set_tls_username("alice")?;
            h.set_tls_psk_file(&psk)?;
            h.connect_unix(&sock)?;
            Ok(h)
        })
        .unwrap();
    assert_eq!(mc.connections(), 3);
    for i in 0..3 {
        assert!(mc.handle(i).unwrap().tls_negotiated().unwrap());
    }
    let data = seeded_pattern(7 * MIB + 512, 4096, 21);
    mc.pwrite(&data, 4096, nbd::CmdFlag::empty()).unwrap();
    mc.flush(nbd::CmdFlag::empty()).unwrap();
    let mut back = vec![0; data.len()];
    mc.pread(&mut back, 4096, nbd::CmdFlag::empty()).unwrap();
    assert!(back == data);
}

#[test]
fn chunks_respect_the_servers_maximum_block_size() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    // The server refuses requests over 64 KiB: the pool's chunks must
    // stay within that, for requests split or not.
    let dir = TempDir::new("mc-bsize");
    let (_server, sock) = nbdkit_unix(
        &dir,
        &[
            "--filter=blocksize-policy",
            "memory",
            "16M",
            "blocksize-maximum=64K",
            "blocksize-minimum=512",
            "blocksize-preferred=4K",
            "blocksize-error-policy=error",
        ],
    );
    let mc = MultiConn::builder()
        .connections(2)
        .connect_unix(&sock)
        .unwrap();
    assert_eq!(mc.max_chunk(), 64 * 1024);
    for len in [100 * 1024, 3 * MIB] {
        let data = seeded_pattern(len, 8192, 5);
        mc.pwrite(&data, 8192, nbd::CmdFlag::empty()).unwrap();
        let mut back = vec![0; len];
        mc.pread(&mut back, 8192, nbd::CmdFlag::empty()).unwrap();
        assert!(back == data, "{len} bytes differ");
    }
}

#[test]
fn asynchronous_commands_spread_over_connections() {
    if !have("nbdkit", "multiconn") {
        return;
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    const N: usize = 48;
    const LEN: usize = 64 * 1024;
    let dir = TempDir::new("mc-aio");
    let (_server, sock) = nbdkit_unix(&dir, &["memory", "16M"]);
    let mc = MultiConn::builder()
        .connections(3)
        .connect_unix(&sock)
        .unwrap();
    // Nothing in flight: a zero timeout just times out.
    assert_eq!(mc.poll(0).unwrap(), 0);
    assert_eq!(mc.aio_in_flight().unwrap(), 0);

    let data: Vec<Vec<u8>> = (0..N)
        .map(|i| seeded_pattern(LEN, (i * LEN) as u64, 33))
        .collect();
    let ok = Arc::new(AtomicUsize::new(0));
    let mut used = [false; 3];
    for (i, d) in data.iter().enumerate() {
        let ok = Arc::clone(&ok);
        let done = nbd::Completion::new(move |err| {
            if *err == 0 {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            1
        });
        // SAFETY: data outlives the commands: we wait for all below.
        let c = unsafe {
            mc.aio_pwrite(
                d.as_ptr(),
                LEN,
                (i * LEN) as u64,
                Some(done),
                nbd::CmdFlag::empty(),
            )
        }
        .unwrap();
        used[c.connection] = true;
    }
    assert_eq!(used, [true; 3], "not every connection was used");
    while mc.aio_in_flight().unwrap() > 0 {
        mc.poll(-1).unwrap();
    }
    assert_eq!(ok.load(Ordering::Relaxed), N);
    let flush = mc.aio_flush(None, nbd::CmdFlag::empty()).unwrap();
    while !mc.aio_command_completed(flush).unwrap() {
        mc.poll(-1).unwrap();
    }

    let mut back = vec![vec![0u8; LEN]; N];
    let cookies: Vec<_> = back
        .iter_mut()
        .enumerate()
        .map(|(i, b)| {
            // SAFETY: back outlives the commands: we wait for all below.
            unsafe {
                mc.aio_pread(
                    b.as_mut_ptr(),
                    LEN,
                    (i * LEN) as u64,
                    None,
                    nbd::CmdFlag::empty(),
                )
            }
            .unwrap()
        })
        .collect();
    let mut pending = cookies.clone();
    while !pending.is_empty() {
        mc.poll(-1).unwrap();
        pending.retain(|&c| !mc.aio_command_completed(c).unwrap());
    }
    assert!(back == data);
    let bad = nbd::MultiCookie {
        connection: 7,
        cookie: 1,
    };
    assert_eq!(
        mc.aio_command_completed(bad).unwrap_err().errno(),
        libc::EINVAL
    );
}
