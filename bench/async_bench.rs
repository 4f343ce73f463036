//! The async benchmark row: CONNS connections, each with DEPTH reads of
//! SIZE bytes always in flight at random aligned offsets, for SECS seconds,
//! on a tokio multi-thread runtime; written once with our `nbd::AsyncHandle`
//! and once with libnbd's own `libnbd` crate (1.22.2, over the oracle C
//! library). Built by bench/async.sh, which generates the manifest.
//!
//! Each is built separately (feature `ours` or `theirs`): our crate
//! exports the C symbols `nbd_*` too, which would otherwise satisfy the
//! `libnbd` crate's calls in place of the oracle library.
//!
//! Usage: async_bench ours|theirs SOCKET SIZE [CONNS DEPTH SECS]
//! Prints: `MiB/s CPU-seconds-per-GiB`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// A small xorshift generator: offsets differ per worker.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args[1].clone();
    let sock = args[2].clone();
    let size: usize = args[3].parse().unwrap();
    let conns: usize = args.get(4).map_or(8, |s| s.parse().unwrap());
    let depth: usize = args.get(5).map_or(16, |s| s.parse().unwrap());
    let secs: f64 = args.get(6).map_or(5.0, |s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (mib_s, cpu_per_gib) = rt.block_on(async move {
        // Connect everything first (inside spawned tasks, as the libnbd
        // crate needs), then time the reads only.
        let mut conns_ready = Vec::new();
        for c in 0..conns {
            let sock = sock.clone();
            let which = which.clone();
            conns_ready.push(tokio::spawn(async move { Conn::open(&which, &sock, c).await }));
        }
        let mut handles = Vec::new();
        for c in conns_ready {
            handles.push(Arc::new(c.await.unwrap()));
        }
        let export = handles[0].size();
        let blocks = export / size as u64;
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let mut workers = Vec::new();
        for (c, h) in handles.iter().enumerate() {
            for d in 0..depth {
                let (h, bytes, stop) = (Arc::clone(h), Arc::clone(&bytes), Arc::clone(&stop));
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ ((c * 1000 + d + 1) as u64);
                workers.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; size];
                    while !stop.load(Relaxed) {
                        let off = (next(&mut seed) % blocks) * size as u64;
                        buf = h.pread(buf, off).await;
                        bytes.fetch_add(size as u64, Relaxed);
                    }
                }));
            }
        }
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let (el, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        let b = bytes.load(Relaxed) as f64;
        for h in handles {
            h.close().await;
        }
        (b / el / 1048576.0, cpu / (b / 1073741824.0))
    });
    println!("{mib_s:.1} {cpu_per_gib:.3}");
}

enum Conn {
    #[cfg(feature = "ours")]
    Ours(nbd::AsyncHandle),
    #[cfg(feature = "theirs")]
    Theirs(libnbd::AsyncHandle),
}

impl Conn {
    async fn open(which: &str, sock: &str, _c: usize) -> Conn {
        match which {
            #[cfg(feature = "ours")]
            "ours" => {
                let h = nbd::AsyncHandle::new().unwrap();
                h.connect_unix(sock).await.unwrap();
                Conn::Ours(h)
            }
            #[cfg(feature = "theirs")]
            "theirs" => {
                let h = libnbd::AsyncHandle::new().unwrap();
                h.connect_unix(sock).await.unwrap();
                Conn::Theirs(h)
            }
            _ => panic!("{which}: not built in"),
        }
    }

    fn size(&self) -> u64 {
        match self {
            #[cfg(feature = "ours")]
            Conn::Ours(h) => h.size().unwrap(),
            #[cfg(feature = "theirs")]
            Conn::Theirs(h) => h.get_size().unwrap(),
        }
    }

    async fn pread(&self, buf: Vec<u8>, off: u64) -> Vec<u8> {
        match self {
            #[cfg(feature = "ours")]
            Conn::Ours(h) => h.pread(buf, off, nbd::CmdFlag::empty()).await.unwrap(),
            #[cfg(feature = "theirs")]
            Conn::Theirs(h) => {
                let mut buf = buf;
                h.pread(&mut buf, off, None).await.unwrap();
                buf
            }
        }
    }

    async fn close(&self) {
        match self {
            #[cfg(feature = "ours")]
            Conn::Ours(h) => h.shutdown().await.unwrap(),
            // Dropped with the runtime.
            #[cfg(feature = "theirs")]
            Conn::Theirs(_) => {}
        }
    }
}
