//! The async API (`AsyncHandle`) against real nbdkit servers.
#![cfg(feature = "tokio")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::runtime;
use common::{have, nbdkit_unix, seeded_pattern, Server, TempDir};
use nbd::{AsyncHandle, CmdFlag, Handle};

const MIB: u64 = 1024 * 1024;

#[test]
fn concurrent_tasks_read_and_write_with_data_checks() {
    if !have("nbdkit", "concurrent_tasks") {
        return;
    }
    runtime().block_on(async {
        let nbd = Arc::new(AsyncHandle::new().unwrap());
        nbd.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "64M"])
            .await
            .unwrap();
        assert_eq!(nbd.size().unwrap(), 64 * MIB);
        let mut tasks = Vec::new();
        for t in 0..32u64 {
            let nbd = Arc::clone(&nbd);
            tasks.push(tokio::spawn(async move {
                // Each task owns its own 2 MiB region.
                for round in 0..20u64 {
                    let len = 4096 * (1 + (round as usize * 7 + t as usize) % 32);
                    let off = t * 2 * MIB + (round * 12288) % MIB;
                    let data = seeded_pattern(len, off, (t + round) as u8);
                    let back = nbd
                        .pwrite(data.clone(), off, CmdFlag::empty())
                        .await
                        .unwrap();
                    assert_eq!(back, data, "pwrite gives the buffer back");
                    let got = nbd
                        .pread(vec![0; len], off, CmdFlag::empty())
                        .await
                        .unwrap();
                    assert!(got == data, "task {t} round {round}: data mismatch");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Many commands in flight at once from one task as well.
        let futs: Vec<_> = (0..64u64)
            .map(|i| {
                Box::pin(nbd.pwrite(
                    seeded_pattern(4096, i * 4096, 5),
                    i * 4096,
                    CmdFlag::empty(),
                ))
            })
            .collect();
        for r in futures_join(futs).await {
            r.unwrap();
        }
        let futs: Vec<_> = (0..64u64)
            .map(|i| Box::pin(nbd.pread(vec![0; 4096], i * 4096, CmdFlag::empty())))
            .collect();
        for (i, r) in futures_join(futs).await.into_iter().enumerate() {
            assert!(
                r.unwrap() == seeded_pattern(4096, i as u64 * 4096, 5),
                "read {i}"
            );
        }
        nbd.flush(CmdFlag::empty()).await.unwrap();
        nbd.zero(MIB, 0, CmdFlag::empty()).await.unwrap();
        let z = nbd
            .pread(vec![1; 4096], 4096, CmdFlag::empty())
            .await
            .unwrap();
        assert!(z.iter().all(|&b| b == 0));
        nbd.trim(MIB, 0, CmdFlag::empty()).await.unwrap();
        nbd.cache(4096, 0, CmdFlag::empty()).await.unwrap();
        assert_eq!(nbd.in_flight().unwrap(), 0);
        nbd.shutdown().await.unwrap();
        assert!(nbd.handle().aio_is_closed());
    });
}

/// Awaits all futures concurrently on the current task.
async fn futures_join<F: std::future::Future + Unpin>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Option<F>> = futs.into_iter().map(Some).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(fut) = f {
                match std::future::Future::poll(std::pin::Pin::new(fut), cx) {
                    std::task::Poll::Ready(v) => {
                        *o = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[test]
fn connect_variants() {
    if !have("nbdkit", "connect_variants") {
        return;
    }
    let dir = TempDir::new("async-connect");
    let (_server, sock) = nbdkit_unix(&dir, &["memory", "1M"]);
    runtime().block_on(async {
        let a = AsyncHandle::new().unwrap();
        a.connect_unix(&sock).await.unwrap();
        assert_eq!(a.size().unwrap(), MIB);

        let b = AsyncHandle::new().unwrap();
        let uri = format!("nbd+unix:///?socket={}", sock.display());
        b.connect_uri(&uri).await.unwrap();
        assert_eq!(b.size().unwrap(), MIB);
        b.pwrite(vec![7; 512], 0, CmdFlag::FUA).await.unwrap();
        let got = a.pread(vec![0; 512], 0, CmdFlag::empty()).await.unwrap();
        assert_eq!(got, vec![7; 512]);

        // A socket connected beforehand.
        let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        let c = AsyncHandle::new().unwrap();
        c.connect_socket(s.into()).await.unwrap();
        assert_eq!(c.size().unwrap(), MIB);

        // Nothing listening: an error, no hang.
        let d = AsyncHandle::new().unwrap();
        let e = d.connect_unix(dir.path("nothing")).await.unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT, "{e}");

        // Option mode: list, then go.
        let h = Handle::new().unwrap();
        h.set_opt_mode(true).unwrap();
        let o = AsyncHandle::from_handle(h);
        o.connect_unix(&sock).await.unwrap();
        assert!(o.handle().aio_is_negotiating());
        let exports = o.opt_list().await.unwrap();
        assert_eq!(exports.len(), 1, "{exports:?}");
        o.opt_go().await.unwrap();
        assert!(o.handle().aio_is_ready());
        assert_eq!(o.size().unwrap(), MIB);
        for h in [a, b, c, o] {
            h.shutdown().await.unwrap();
        }
    });
}

#[test]
fn connect_tcp_and_opt_abort() {
    if !have("nbdkit", "connect_tcp") {
        return;
    }
    let dir = TempDir::new("async-tcp");
    let pidfile = dir.path("pid");
    let pf = pidfile.to_str().unwrap().to_string();
    let port = (20000 + std::process::id() % 20000).to_string();
    let _server = Server::start(
        "nbdkit",
        &[
            "-f",
            "-p",
            &port,
            "-P",
            &pf,
            "-i",
            "127.0.0.1",
            "--exit-with-parent",
            "null",
            "1M",
        ],
        || pidfile.exists(),
    );
    runtime().block_on(async {
        let t = AsyncHandle::new().unwrap();
        t.connect_tcp("127.0.0.1", &port).await.unwrap();
        assert_eq!(t.size().unwrap(), MIB);
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let u = AsyncHandle::new().unwrap();
        u.connect(addr).await.unwrap();
        assert_eq!(
            u.pread(vec![1; 512], 0, CmdFlag::empty()).await.unwrap(),
            vec![0; 512]
        );
        t.shutdown().await.unwrap();
        u.shutdown().await.unwrap();

        let h = Handle::new().unwrap();
        h.set_opt_mode(true).unwrap();
        let o = AsyncHandle::from_handle(h);
        o.connect_command(&["nbdkit", "-s", "--exit-with-parent", "null", "1M"])
            .await
            .unwrap();
        o.opt_info().await.unwrap();
        assert_eq!(o.size().unwrap(), MIB);
        o.shutdown().await.unwrap();
        assert!(o.handle().aio_is_closed());
    });
}

#[test]
fn block_status_extents() {
    if !have("nbdkit", "block_status") {
        return;
    }
    runtime().block_on(async {
        let h = Handle::new().unwrap();
        h.add_meta_context("base:allocation").unwrap();
        let nbd = AsyncHandle::from_handle(h);
        nbd.connect_command(&[
            "nbdkit",
            "-s",
            "--exit-with-parent",
            "data",
            "data=@1048576 1",
            "size=4M",
        ])
        .await
        .unwrap();
        assert!(nbd.can_meta_context("base:allocation").unwrap());
        let got = nbd
            .block_status(4 * MIB, 0, CmdFlag::empty())
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].context, "base:allocation");
        assert_eq!(got[0].offset, 0);
        let total: u64 = got[0].extents.iter().map(|e| e.length).sum();
        assert!(total > 0 && total <= 4 * MIB);
        // The first MiB is a hole reading as zero (3), then data (0).
        assert_eq!(got[0].extents[0].flags & 3, 3, "{got:?}");
        assert_eq!(got[0].extents[0].length, MIB, "{got:?}");
        assert_eq!(got[0].extents[1].flags & 1, 0, "{got:?}");
        nbd.shutdown().await.unwrap();
    });
}

#[test]
fn dropped_futures_leave_the_handle_usable() {
    if !have("nbdkit", "dropped_futures") {
        return;
    }
    runtime().block_on(async {
        let nbd = Arc::new(AsyncHandle::new().unwrap());
        nbd.connect_command(&[
            "nbdkit",
            "-s",
            "--exit-with-parent",
            "--filter=delay",
            "memory",
            "16M",
            "rdelay=1",
        ])
        .await
        .unwrap();
        nbd.pwrite(seeded_pattern(65536, 0, 9), 0, CmdFlag::empty())
            .await
            .unwrap();
        // Timeouts: the reads are cancelled while in flight.
        for _ in 0..4 {
            let r = tokio::time::timeout(
                Duration::from_millis(50),
                nbd.pread(vec![0; 65536], 0, CmdFlag::empty()),
            )
            .await;
            assert!(r.is_err(), "the read must time out");
        }
        // select!: another branch wins.
        tokio::select! {
            _ = nbd.pread(vec![0; 4096], 0, CmdFlag::empty()) => panic!("read was too fast"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert_eq!(
            nbd.in_flight().unwrap(),
            5,
            "the dropped reads stay in flight"
        );
        // Writes are not delayed; they complete while the reads are pending.
        for i in 0..8u64 {
            nbd.pwrite(
                seeded_pattern(4096, MIB + i * 4096, 1),
                MIB + i * 4096,
                CmdFlag::empty(),
            )
            .await
            .unwrap();
        }
        // A later read (queued behind the dropped ones) returns good data.
        let t = Instant::now();
        let got = nbd
            .pread(vec![0; 65536], 0, CmdFlag::empty())
            .await
            .unwrap();
        assert!(got == seeded_pattern(65536, 0, 9));
        assert!(t.elapsed() < Duration::from_secs(10));
        // Allocate and fill a lot to disturb any freed buffer; then wait
        // for the replies to the dropped reads to be discarded.
        let junk: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 65536]).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while nbd.in_flight().unwrap() > 0 {
            assert!(Instant::now() < deadline, "dropped reads never retired");
            // Any command drives the connection.
            nbd.flush(CmdFlag::empty()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (i, j) in junk.iter().enumerate() {
            assert!(j.iter().all(|&b| b == i as u8), "junk was overwritten");
        }
        nbd.shutdown().await.unwrap();
    });
}

#[test]
fn killed_server_fails_pending_futures() {
    if !have("nbdkit", "killed_server") {
        return;
    }
    let dir = TempDir::new("async-kill");
    let (mut server, sock) = nbdkit_unix(&dir, &["--filter=delay", "memory", "16M", "rdelay=3"]);
    runtime().block_on(async {
        let nbd = Arc::new(AsyncHandle::new().unwrap());
        nbd.connect_unix(&sock).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let nbd = Arc::clone(&nbd);
            tasks.push(tokio::spawn(async move {
                nbd.pread(vec![0; 4096], i * 4096, CmdFlag::empty()).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.child.kill().unwrap();
        let t = Instant::now();
        for task in tasks {
            let r = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("a pending future hung after the server died")
                .unwrap();
            let e = r.unwrap_err();
            assert!(
                [libc::ENOTCONN, libc::ECONNRESET, libc::EPIPE].contains(&e.errno()),
                "{e}"
            );
        }
        assert!(t.elapsed() < Duration::from_secs(3));
        // Later commands fail at once.
        let e = nbd
            .pread(vec![0; 512], 0, CmdFlag::empty())
            .await
            .unwrap_err();
        assert_ne!(e.errno(), 0);
    });
}

#[test]
fn timeout_then_success_on_current_thread_runtime() {
    if !have("nbdkit", "timeout_current_thread") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let nbd = AsyncHandle::new().unwrap();
        nbd.connect_command(&[
            "nbdkit",
            "-s",
            "--exit-with-parent",
            "--filter=delay",
            "memory",
            "1M",
            "rdelay=1",
        ])
        .await
        .unwrap();
        let r = tokio::time::timeout(
            Duration::from_millis(100),
            nbd.pread(vec![0; 512], 0, CmdFlag::empty()),
        )
        .await;
        assert!(r.is_err());
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            nbd.pread(vec![0; 512], 0, CmdFlag::empty()),
        )
        .await
        .expect("second read timed out");
        assert_eq!(r.unwrap(), vec![0; 512]);
        // Dropping the handle with a command in flight frees its buffer.
        let f = nbd.pread(vec![0; 512], 0, CmdFlag::empty());
        let _ = tokio::time::timeout(Duration::from_millis(10), f).await;
        drop(nbd);
    });
}

#[test]
fn owned_sync_aio_commands() {
    if !have("nbdkit", "owned_sync_aio") {
        return;
    }
    let h = common::nbdkit(&["memory", "1M"]);
    let w = h
        .aio_pwrite_owned(seeded_pattern(8192, 4096, 3), 4096, CmdFlag::empty())
        .unwrap();
    let mut r = h
        .aio_pread_owned(vec![0; 8192], 4096, CmdFlag::empty())
        .unwrap();
    assert!(r.cookie() > w.cookie());
    let got = loop {
        match r.take() {
            Ok(res) => break res.unwrap(),
            Err(pending) => r = pending,
        }
        h.poll(-1).unwrap();
    };
    assert!(got == seeded_pattern(8192, 4096, 3));
    assert!(w.is_done());
    assert_eq!(w.take().unwrap().unwrap(), seeded_pattern(8192, 4096, 3));
    // Dropped while in flight: freed when the reply comes.
    drop(
        h.aio_pread_owned(vec![0; 4096], 0, CmdFlag::empty())
            .unwrap(),
    );
    while h.aio_in_flight().unwrap() > 0 {
        h.poll(-1).unwrap();
    }
    // Past the end: refused before anything is sent (strict bounds).
    let e = h
        .aio_pread_owned(vec![0; 512], 1 << 20, CmdFlag::empty())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
}

/// Feature `log`: debug messages reach the `log` crate.
#[cfg(feature = "log")]
#[test]
fn debug_messages_go_to_the_log_crate() {
    use std::sync::Mutex;
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.target() == "nbd"
        }
        fn log(&self, r: &log::Record) {
            if r.target() == "nbd" {
                LINES.lock().unwrap().push(format!("{}", r.args()));
            }
        }
        fn flush(&self) {}
    }
    if !have("nbdkit", "log") {
        return;
    }
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    runtime().block_on(async {
        let nbd = AsyncHandle::new().unwrap();
        assert!(nbd.handle().debug(), "debug is on when the logger wants it");
        nbd.connect_command(&["nbdkit", "-s", "--exit-with-parent", "null", "1M"])
            .await
            .unwrap();
        nbd.pread(vec![0; 512], 0, CmdFlag::empty()).await.unwrap();
        nbd.shutdown().await.unwrap();
    });
    let lines = LINES.lock().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("command completed")),
        "{lines:?}"
    );
}

/// Large writes fill the socket: the write-readiness path drives them.
#[test]
fn large_concurrent_writes_and_reads() {
    if !have("nbdkit", "large_writes") {
        return;
    }
    runtime().block_on(async {
        let nbd = Arc::new(AsyncHandle::new().unwrap());
        nbd.connect_command(&["nbdkit", "-s", "--exit-with-parent", "memory", "64M"])
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let nbd = Arc::clone(&nbd);
            tasks.push(tokio::spawn(async move {
                let off = t * 4 * MIB;
                let data = seeded_pattern(4 * MIB as usize, off, t as u8);
                nbd.pwrite(data.clone(), off, CmdFlag::empty())
                    .await
                    .unwrap();
                let got = nbd
                    .pread(vec![0; 4 * MIB as usize], off, CmdFlag::empty())
                    .await
                    .unwrap();
                assert!(got == data, "task {t}");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        nbd.shutdown().await.unwrap();
    });
}

/// A handle connected synchronously, then wrapped.
#[test]
fn wrap_a_connected_handle() {
    if !have("nbdkit", "wrap_connected") {
        return;
    }
    let h = common::nbdkit(&["memory", "1M"]);
    h.pwrite(&[5; 512], 0, nbd::CmdFlag::empty()).unwrap();
    runtime().block_on(async {
        let nbd = AsyncHandle::from_handle(h);
        let got = nbd.pread(vec![0; 512], 0, CmdFlag::empty()).await.unwrap();
        assert_eq!(got, vec![5; 512]);
        nbd.shutdown().await.unwrap();
    });
}
