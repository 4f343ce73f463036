//! multiconn_bench: reads a whole nbdkit `pattern` export once, for the
//! `multiconn` rows of bench/run.sh.
//!
//!   multiconn_bench pool N SOCKET [REQUEST_BYTES]
//!       through a MultiConn of N connections (1 if the server does not
//!       advertise multi-conn), in sequential MultiConn::pread calls of
//!       REQUEST_BYTES (default 8 MiB), each split over the connections
//!   multiconn_bench handle SOCKET [REQUEST_BYTES]
//!       through one Handle, sequential Handle::pread calls of
//!       REQUEST_BYTES (default 1 MiB), one at a time
//!
//!   multiconn_bench mt N SOCKET [THREADS] [SECS]
//!       THREADS threads (default 8) doing sync 4 KiB preads for SECS
//!       seconds (default 2) through a MultiConn of N connections (N = 0:
//!       one plain Handle shared by the threads); prints ops/s
//!
//! MULTICONN_CHUNK=BYTES sets the pool's largest chunk. Every request's
//! first and last 8-byte words are checked against the pattern (each word
//! holds its own offset, big-endian).
//!
//! Prints one line: `RESULT mode=... value=MiB/s unit=MiB/s secs=...
//! bytes=... cpu=... cpu_per_gib=... connections=...`; exit status 1 with
//! `ERROR ...` on failure.

use std::time::Instant;

use nbd::{Handle, MultiConn};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn check(buf: &[u8], offset: u64) -> Result<(), String> {
    let word = |i: usize| u64::from_be_bytes(buf[i..i + 8].try_into().unwrap());
    let last = buf.len() - 8;
    if word(0) != offset || word(last) != offset + last as u64 {
        return Err(format!("bad data at offset {offset}"));
    }
    Ok(())
}

/// Reads `buf.len()` bytes at an offset.
type Reader = Box<dyn Fn(&mut [u8], u64) -> nbd::Result<()>>;

fn run(args: &[String]) -> Result<String, String> {
    let usage = "usage: multiconn_bench pool N SOCKET [REQ] | handle SOCKET [REQ]";
    let mode = args.first().ok_or(usage)?.as_str();
    let parse = |s: &String| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
    let (reader, conns, request): (Reader, usize, usize) = match mode {
        "pool" => {
            let n = parse(args.get(1).ok_or(usage)?)?;
            let sock = args.get(2).ok_or(usage)?;
            let req = args.get(3).map(parse).transpose()?.unwrap_or(8 << 20);
            let mut b = MultiConn::builder().connections(n);
            if let Ok(c) = std::env::var("MULTICONN_CHUNK") {
                b = b.max_chunk(c.parse().map_err(|e| format!("MULTICONN_CHUNK: {e}"))?);
            }
            let mc = b.connect_unix(sock).map_err(|e| e.to_string())?;
            let n = mc.connections();
            (
                Box::new(move |buf, off| mc.pread(buf, off, nbd::CmdFlag::empty())),
                n,
                req,
            )
        }
        "handle" => {
            let sock = args.get(1).ok_or(usage)?;
            let req = args.get(2).map(parse).transpose()?.unwrap_or(1 << 20);
            let h = Handle::new().map_err(|e| e.to_string())?;
            h.connect_unix(sock).map_err(|e| e.to_string())?;
            (
                Box::new(move |buf, off| h.pread(buf, off, nbd::CmdFlag::empty())),
                1,
                req,
            )
        }
        _ => return Err(usage.into()),
    };
    // The export's size: ask a plain handle (cheap, and not timed).
    let sock = if mode == "pool" { &args[2] } else { &args[1] };
    let h = Handle::new().map_err(|e| e.to_string())?;
    h.connect_unix(sock).map_err(|e| e.to_string())?;
    let size = h.size().map_err(|e| e.to_string())?;
    drop(h);

    let mut buf = vec![0u8; request];
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut off = 0u64;
    while off < size {
        let len = request.min((size - off) as usize);
        reader(&mut buf[..len], off).map_err(|e| e.to_string())?;
        check(&buf[..len], off)?;
        off += len as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let gib = size as f64 / (1u64 << 30) as f64;
    Ok(format!(
        "RESULT mode={mode} value={:.3} unit=MiB/s secs={secs:.3} bytes={size} cpu={cpu:.3} \
         cpu_per_gib={:.3} connections={conns} request={request}",
        size as f64 / (1 << 20) as f64 / secs,
        cpu / gib
    ))
}

/// The `mt` mode: many threads, small reads, one pool or one handle.
fn run_mt(args: &[String]) -> Result<String, String> {
    let usage = "usage: multiconn_bench mt N SOCKET [THREADS] [SECS]";
    let parse = |s: &String| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
    let n = parse(args.get(1).ok_or(usage)?)?;
    let sock = args.get(2).ok_or(usage)?;
    let threads = args.get(3).map(parse).transpose()?.unwrap_or(8);
    let secs = args.get(4).map(parse).transpose()?.unwrap_or(2) as u64;
    enum Target {
        Pool(MultiConn),
        One(Box<Handle>),
    }
    let target = if n == 0 {
        let h = Handle::new().map_err(|e| e.to_string())?;
        h.connect_unix(sock).map_err(|e| e.to_string())?;
        Target::One(Box::new(h))
    } else {
        let mc = MultiConn::builder()
            .connections(n)
            .connect_unix(sock)
            .map_err(|e| e.to_string())?;
        Target::Pool(mc)
    };
    let conns = match &target {
        Target::Pool(mc) => mc.connections(),
        Target::One(_) => 1,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let ops: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (target, stop) = (&target, &stop);
                s.spawn(move || -> Result<usize, String> {
                    let mut buf = [0u8; 4096];
                    let mut done = 0;
                    let mut off = (t as u64) << 20;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match target {
                            Target::Pool(mc) => mc.pread(&mut buf, off, nbd::CmdFlag::empty()),
                            Target::One(h) => h.pread(&mut buf, off, nbd::CmdFlag::empty()),
                        }
                        .map_err(|e| e.to_string())?;
                        check(&buf, off)?;
                        done += 1;
                        off = (off + 4096) % (512 << 20);
                    }
                    Ok(done)
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_secs(secs));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.iter().sum())
    })?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let gib = (ops * 4096) as f64 / (1u64 << 30) as f64;
    Ok(format!(
        "RESULT mode=mt value={:.1} unit=ops/s secs={elapsed:.3} bytes={} cpu={cpu:.3} \
         cpu_per_gib={:.3} connections={conns} threads={threads}",
        ops as f64 / elapsed,
        ops * 4096,
        cpu / gib
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().is_some_and(|m| m == "mt") {
        run_mt(&args)
    } else {
        run(&args)
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => {
            println!("ERROR {e}");
            std::process::exit(1);
        }
    }
}
