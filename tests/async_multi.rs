//! `AsyncMultiConn` (multi-connection I/O on tokio) against nbdkit's
//! multi-conn filter: commands of concurrent tasks spread over the
//! connections, data written through the pool is read back after a flush
//! through another connection, and without multi-conn the pool has one.
#![cfg(feature = "tokio")]

mod common;

use std::sync::Arc;

use common::runtime;
use common::{have, nbdkit_unix, seeded_pattern, TempDir};
use nbd::{AsyncHandle, AsyncMultiConn, CmdFlag, Handle};

const MIB: u64 = 1024 * 1024;

#[test]
fn tasks_spread_over_connections_and_flush_covers_them() {
    if !have("nbdkit", "tasks_spread_over_connections") {
        return;
    }
    let dir = TempDir::new("async-multi");
    let (_server, sock) = nbdkit_unix(&dir, &["--filter=multi-conn", "memory", "16M"]);
    let uri = format!("nbd+unix:///?socket={}", sock.display());
    runtime().block_on(async {
        let pool = Arc::new(AsyncMultiConn::connect_uri(4, &uri).await.unwrap());
        assert_eq!(pool.connections(), 4);
        assert_eq!(pool.size(), 16 * MIB);
        assert!(pool.can_multi_conn().unwrap());
        let sent: Vec<u64> = (0..4)
            .map(|i| pool.handle(i).unwrap().handle().stats_bytes_sent())
            .collect();
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let pool = Arc::clone(&pool);
            tasks.push(tokio::spawn(async move {
                for round in 0..8u64 {
                    let off = t * 2 * MIB + round * 65536;
                    let d = seeded_pattern(65536, off, t as u8);
                    let back = pool.pwrite(d.clone(), off, CmdFlag::empty()).await.unwrap();
                    assert_eq!(back, d);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        pool.flush(CmdFlag::empty()).await.unwrap();
        // Every connection carried some of the writes.
        for (i, before) in sent.iter().enumerate() {
            let now = pool.handle(i).unwrap().handle().stats_bytes_sent();
            assert!(now > before + 65536, "connection {i} sent {}", now - before);
        }
        // Another connection, not of the pool, reads what was written.
        let other = Handle::new().unwrap();
        other.connect_uri(&uri).unwrap();
        for t in 0..8u64 {
            let off = t * 2 * MIB;
            let mut buf = vec![0u8; 8 * 65536];
            other.pread(&mut buf, off, CmdFlag::empty()).unwrap();
            assert!(
                buf == seeded_pattern(8 * 65536, off, t as u8),
                "task {t}'s region"
            );
        }
        // And the other way round, read concurrently through the pool.
        other
            .pwrite(&[0x77; 4096], 15 * MIB, CmdFlag::empty())
            .unwrap();
        other.flush(CmdFlag::empty()).unwrap();
        let (a, b) = tokio::join!(
            pool.pread(vec![0; 4096], 15 * MIB, CmdFlag::empty()),
            pool.pread(vec![0; 65536], 2 * MIB, CmdFlag::empty()),
        );
        assert_eq!(a.unwrap(), vec![0x77; 4096]);
        assert_eq!(b.unwrap(), seeded_pattern(65536, 2 * MIB, 1));
        // Zero and trim go through too.
        pool.zero(4096, 2 * MIB, CmdFlag::empty()).await.unwrap();
        pool.trim(4096, 0, CmdFlag::empty()).await.unwrap();
        pool.flush(CmdFlag::empty()).await.unwrap();
        let mut buf = vec![1u8; 4096];
        other.pread(&mut buf, 2 * MIB, CmdFlag::empty()).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        // Errors are the connection's, and the pool goes on working.
        let err = pool
            .pread(vec![0; 4096], 16 * MIB, CmdFlag::empty())
            .await
            .unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL, "{err}");
        assert!(pool.fatal_error().is_none());
        pool.pread(vec![0; 512], 0, CmdFlag::empty()).await.unwrap();
        pool.shutdown().await.unwrap();
    });
}

#[test]
fn one_connection_without_multi_conn_and_bad_counts() {
    if !have("nbdkit", "one_connection_without_multi_conn") {
        return;
    }
    let dir = TempDir::new("async-multi-off");
    let (_server, sock) = nbdkit_unix(
        &dir,
        &[
            "--filter=multi-conn",
            "memory",
            "4M",
            "multi-conn-mode=disable",
        ],
    );
    let uri = format!("nbd+unix:///?socket={}", sock.display());
    runtime().block_on(async {
        for bad in [0, 17] {
            let err = AsyncMultiConn::connect_uri(bad, &uri).await.unwrap_err();
            assert_eq!(err.errno(), libc::EINVAL, "{err}");
        }
        // The closure form: called once only, since the server does not
        // advertise multi-conn.
        let mut calls = Vec::new();
        let pool = AsyncMultiConn::connect(4, |i| {
            calls.push(i);
            let uri = uri.clone();
            async move {
                let h = AsyncHandle::new()?;
                h.connect_uri(&uri).await?;
                Ok(h)
            }
        })
        .await
        .unwrap();
        assert_eq!(calls, vec![0]);
        assert_eq!(pool.connections(), 1);
        assert!(!pool.can_multi_conn().unwrap());
        let d = seeded_pattern(MIB as usize, 0, 9);
        pool.pwrite(d.clone(), MIB, CmdFlag::empty()).await.unwrap();
        pool.flush(CmdFlag::empty()).await.unwrap();
        let back = pool
            .pread(vec![0; MIB as usize], MIB, CmdFlag::empty())
            .await
            .unwrap();
        assert!(back == d);
        // A connection that is not connected is refused.
        let err = AsyncMultiConn::connect(2, |_| async { AsyncHandle::new() })
            .await
            .unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL, "{err}");
        assert!(
            err.to_string().contains("connection 0 is not ready"),
            "{err}"
        );
    });
}
