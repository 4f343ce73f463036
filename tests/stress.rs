//! Stress: eight threads sharing one handle with a mix of synchronous and
//! asynchronous commands (10^5 in all, data verified), and many handles
//! created, used and closed concurrently (no fd or child process left).
//!
//! Run with `cargo test --release --test stress -- --nocapture` to see
//! the figures.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nbd::{Completion, Handle};

/// The tests here count the process's fds and children: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const THREADS: usize = 8;
const OPS_PER_THREAD: usize = 12_500; // 8 x 12 500 = 10^5
const BS: usize = 4096;
const BLOCKS: usize = 128; // per thread: a 512 KiB region
const REGION: usize = BLOCKS * BS;
/// Asynchronous commands one thread keeps in flight at most.
const MAX_IN_FLIGHT: usize = 16;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Block contents for (thread, block, version): every 8-byte word differs.
fn fill(buf: &mut [u8], thread: usize, block: usize, version: u64) {
    let tag = ((thread as u64) << 56) ^ ((block as u64) << 40) ^ (version << 12);
    for (i, word) in buf.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(
            &(tag ^ i as u64)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .to_le_bytes(),
        );
    }
}

/// What every completion callback reports into.
#[derive(Default)]
struct Tally {
    issued: AtomicUsize,
    calls: AtomicUsize,
    frees: AtomicUsize,
    called_twice: AtomicUsize,
    errors: AtomicUsize,
    mismatches: AtomicUsize,
}

/// Dropped with the callback: counts frees, releases the block.
struct OnFree {
    tally: Arc<Tally>,
    busy: Arc<Vec<AtomicBool>>,
    block: usize,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for OnFree {
    fn drop(&mut self) {
        self.tally.frees.fetch_add(1, Ordering::SeqCst);
    }
}

/// A heap buffer handed to a command, owned by its completion callback.
struct Owned(*mut [u8]);
// SAFETY: the buffer is touched only by the library (while the command
// runs) and then by the callback that owns it.
unsafe impl Send for Owned {}
impl Owned {
    fn new(b: Box<[u8]>) -> Owned {
        Owned(Box::into_raw(b))
    }
    fn ptr(&self) -> *mut u8 {
        self.0 as *mut u8
    }
    /// # Safety: only once the command has finished with the buffer.
    unsafe fn get(&self) -> &[u8] {
        // SAFETY: the box is live, and the caller's promise: no command
        // writes it any more.
        unsafe { &*self.0 }
    }
}
impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: from Box::into_raw; the callback is dropped only after
        // the command has finished (retired, failed or handle closed).
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// A completion callback: counts the call, checks the error and (for
/// reads) the data, frees the buffer when dropped, releases the block.
/// Returns `retire` (1: retire automatically, 0: the issuer retires).
fn completion(free: OnFree, buf: Owned, expect: Option<Box<[u8]>>, retire: i32) -> Completion {
    let mut called = false;
    Completion::new(move |err| {
        let t = &free.tally;
        if called {
            t.called_twice.fetch_add(1, Ordering::SeqCst);
        }
        called = true;
        t.calls.fetch_add(1, Ordering::SeqCst);
        if *err != 0 {
            t.errors.fetch_add(1, Ordering::SeqCst);
        } else if let Some(expect) = &expect {
            // SAFETY: the read is complete.
            if unsafe { buf.get() } != &expect[..] {
                t.mismatches.fetch_add(1, Ordering::SeqCst);
            }
        }
        free.busy[free.block].store(false, Ordering::SeqCst);
        free.in_flight.fetch_sub(1, Ordering::SeqCst);
        retire
    })
}

/// Lets the state machine make progress without holding the handle's lock
/// while waiting (as a multithreaded libnbd program does): poll the fd
/// ourselves, then notify.
fn drive(h: &Handle) {
    let Ok(fd) = h.aio_get_fd() else { return };
    let dir = h.aio_get_direction();
    let mut events = libc::POLLIN;
    if dir.contains(nbd::Direction::WRITE) {
        events |= libc::POLLOUT;
    }
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 5) };
    if pfd.revents & libc::POLLOUT != 0 {
        // Another thread may have sent what was queued since the direction
        // was read: then there is nothing to write and libnbd says EINVAL.
        if let Err(e) = h.aio_notify_write() {
            assert_eq!(e.errno(), libc::EINVAL, "{e}");
        }
    } else {
        h.aio_notify_read().unwrap();
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Mix {
    pread: usize,
    pwrite: usize,
    flush: usize,
    aio_pread: usize,
    aio_pwrite: usize,
    manual_retire: usize,
}

/// One worker: OPS_PER_THREAD commands on its own region; returns the
/// region as it must now be on the server, and what it did.
fn worker(h: &Handle, t: usize, tally: &Arc<Tally>) -> (Vec<u8>, Mix) {
    let base = (t * REGION) as u64;
    let mut model = vec![0u8; REGION];
    let mut version = 0u64;
    let busy: Arc<Vec<AtomicBool>> =
        Arc::new((0..BLOCKS).map(|_| AtomicBool::new(false)).collect());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ ((t as u64 + 1) << 32));
    let mut manual: Vec<u64> = Vec::new();
    let mut mix = Mix::default();
    let mut scratch = vec![0u8; BS];

    // A block with no asynchronous command on it.
    let free_block = |rng: &mut Rng| -> usize {
        let start = rng.below(BLOCKS);
        (0..BLOCKS)
            .map(|k| (start + k) % BLOCKS)
            .find(|&b| !busy[b].load(Ordering::SeqCst))
            .expect("more blocks than commands in flight")
    };

    for _ in 0..OPS_PER_THREAD {
        let r = rng.below(100);
        if r >= 58 {
            while in_flight.load(Ordering::SeqCst) >= MAX_IN_FLIGHT {
                drive(h);
            }
        }
        let b = free_block(&mut rng);
        let off = base + (b * BS) as u64;
        let range = b * BS..(b + 1) * BS;
        match r {
            0..=29 => {
                h.pread(&mut scratch, off, nbd::CmdFlag::empty()).unwrap();
                assert!(
                    scratch[..] == model[range],
                    "thread {t}: block {b} read back wrong"
                );
                mix.pread += 1;
            }
            30..=54 => {
                version += 1;
                fill(&mut model[range.clone()], t, b, version);
                h.pwrite(&model[range], off, nbd::CmdFlag::empty()).unwrap();
                mix.pwrite += 1;
            }
            55..=57 => {
                h.flush(nbd::CmdFlag::empty()).unwrap();
                mix.flush += 1;
            }
            _ => {
                let retire = if rng.below(8) == 0 { 0 } else { 1 };
                busy[b].store(true, Ordering::SeqCst);
                in_flight.fetch_add(1, Ordering::SeqCst);
                tally.issued.fetch_add(1, Ordering::SeqCst);
                let free = OnFree {
                    tally: tally.clone(),
                    busy: busy.clone(),
                    block: b,
                    in_flight: in_flight.clone(),
                };
                let cookie = if r < 78 {
                    version += 1;
                    fill(&mut model[range.clone()], t, b, version);
                    let buf = Owned::new(model[range].to_vec().into_boxed_slice());
                    let p = buf.ptr();
                    let cb = completion(free, buf, None, retire);
                    mix.aio_pwrite += 1;
                    // SAFETY: the buffer lives until the callback is dropped,
                    // which happens only once the command is over.
                    unsafe { h.aio_pwrite(p, BS, off, Some(cb), nbd::CmdFlag::empty()) }.unwrap()
                } else {
                    let buf = Owned::new(vec![0u8; BS].into_boxed_slice());
                    let p = buf.ptr();
                    let expect = model[range].to_vec().into_boxed_slice();
                    let cb = completion(free, buf, Some(expect), retire);
                    mix.aio_pread += 1;
                    // SAFETY: as above.
                    unsafe { h.aio_pread(p, BS, off, Some(cb), nbd::CmdFlag::empty()) }.unwrap()
                };
                if retire == 0 {
                    manual.push(cookie);
                    mix.manual_retire += 1;
                }
            }
        }
        // Retire the oldest command its callback left to us, if done.
        if let Some(&cookie) = manual.first() {
            if h.aio_command_completed(cookie as i64).unwrap() {
                manual.remove(0);
            }
        }
    }
    while in_flight.load(Ordering::SeqCst) > 0 {
        drive(h);
    }
    for cookie in manual {
        assert!(
            h.aio_command_completed(cookie as i64).unwrap(),
            "cookie {cookie} not done"
        );
    }
    (model, mix)
}

#[test]
fn eight_threads_one_handle_mixed_commands() {
    let _serial = serial();
    let size = format!("{}", THREADS * REGION);
    let h = Arc::new(common::nbdkit(&["memory", &size]));
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = h.clone();
            let tally = tally.clone();
            std::thread::spawn(move || worker(&h, t, &tally))
        })
        .collect();
    let results: Vec<(Vec<u8>, Mix)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let secs = start.elapsed().as_secs_f64();

    let mut mix = Mix::default();
    for (_, m) in &results {
        mix.pread += m.pread;
        mix.pwrite += m.pwrite;
        mix.flush += m.flush;
        mix.aio_pread += m.aio_pread;
        mix.aio_pwrite += m.aio_pwrite;
        mix.manual_retire += m.manual_retire;
    }
    let ops = mix.pread + mix.pwrite + mix.flush + mix.aio_pread + mix.aio_pwrite;
    assert_eq!(ops, THREADS * OPS_PER_THREAD);
    eprintln!(
        "stress: {THREADS} threads, one handle: {ops} ops in {secs:.2} s = {:.0} ops/s \
         (pread {}, pwrite {}, flush {}, aio_pread {}, aio_pwrite {}; {} retired by \
         aio_command_completed)",
        ops as f64 / secs,
        mix.pread,
        mix.pwrite,
        mix.flush,
        mix.aio_pread,
        mix.aio_pwrite,
        mix.manual_retire
    );

    // Every callback called once and freed once, without error.
    let aio = mix.aio_pread + mix.aio_pwrite;
    assert_eq!(tally.issued.load(Ordering::SeqCst), aio);
    assert_eq!(tally.calls.load(Ordering::SeqCst), aio);
    assert_eq!(tally.frees.load(Ordering::SeqCst), aio);
    assert_eq!(tally.called_twice.load(Ordering::SeqCst), 0);
    assert_eq!(tally.errors.load(Ordering::SeqCst), 0);
    assert_eq!(tally.mismatches.load(Ordering::SeqCst), 0);
    assert_eq!(h.aio_in_flight().unwrap(), 0);

    // The server holds exactly what each thread last wrote.
    let mut back = vec![0u8; REGION];
    for (t, (model, _)) in results.iter().enumerate() {
        h.pread(&mut back, (t * REGION) as u64, nbd::CmdFlag::empty())
            .unwrap();
        for b in 0..BLOCKS {
            let r = b * BS..(b + 1) * BS;
            assert!(
                back[r.clone()] == model[r],
                "thread {t} block {b} differs at the end"
            );
        }
    }
}

/// The process's open fds.
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Our child processes, live or zombie, from /proc/*/stat.
fn children() -> Vec<i32> {
    // SAFETY: plain syscall.
    let me = unsafe { libc::getpid() };
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parens.
        let Some(tail) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid = tail
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<i32>().ok());
        if ppid == Some(me) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn handles_created_and_closed_concurrently() {
    const THREADS: usize = 8;
    const HANDLES: usize = 8; // per thread
    let _serial = serial();
    assert_eq!(children(), Vec::<i32>::new(), "children before the test");
    let fds_before = fd_count();
    let frees = Arc::new(AtomicUsize::new(0));
    let issued = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let frees = frees.clone();
            let issued = issued.clone();
            std::thread::spawn(move || {
                for i in 0..HANDLES {
                    let h = Handle::new().unwrap();
                    h.set_handle_name(&format!("t{t}h{i}")).unwrap();
                    // --log=null: closing with a read in flight makes nbdkit complain.
                    common::nbdkit_on(&h, &["--log=null", "memory", "1M"]);
                    let data = vec![(t * HANDLES + i) as u8; 8192];
                    h.pwrite(&data, 4096, nbd::CmdFlag::empty()).unwrap();
                    let mut back = vec![0u8; 8192];
                    h.pread(&mut back, 4096, nbd::CmdFlag::empty()).unwrap();
                    assert_eq!(back, data);
                    h.flush(nbd::CmdFlag::empty()).unwrap();
                    // Every other handle is closed with commands in flight.
                    let guard = Counted(frees.clone());
                    let buf = Owned::new(vec![0u8; 4096].into_boxed_slice());
                    let p = buf.ptr();
                    let cb = Completion::new(move |_| {
                        let _keep = (&guard, &buf);
                        1
                    });
                    issued.fetch_add(1, Ordering::SeqCst);
                    // SAFETY: the buffer belongs to the callback.
                    unsafe { h.aio_pread(p, 4096, 0, Some(cb), nbd::CmdFlag::empty()) }.unwrap();
                    if i % 2 == 0 {
                        while h.aio_in_flight().unwrap() > 0 {
                            h.poll(10_000).unwrap();
                        }
                    }
                    h.close();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "stress: {} handles connected, used and closed from {THREADS} threads in {secs:.2} s",
        THREADS * HANDLES
    );
    assert_eq!(frees.load(Ordering::SeqCst), issued.load(Ordering::SeqCst));
    // Closing reaps each subprocess: none is left, not even a zombie.
    assert_eq!(children(), Vec::<i32>::new(), "children left after close");
    // And every socket is closed.
    let deadline = Instant::now() + Duration::from_secs(1);
    while fd_count() != fds_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fd_count(), fds_before, "fds leaked");
}

struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Synchronous commands from several threads are on the wire together: a
/// thread waiting for its reply does not hold the handle, so the others
/// can send theirs. nbdkit's delay filter holds every read 200 ms and runs
/// requests in parallel, so eight concurrent reads take about 200 ms, not
/// the 1.6 s they take one after another (as with libnbd, whose sync calls
/// keep the handle locked while they wait).
#[test]
fn sync_commands_from_threads_overlap() {
    if !common::have("nbdkit", "sync_commands_from_threads_overlap") {
        return;
    }
    let _serial = serial();
    let h = Arc::new(common::nbdkit(&[
        "--filter=delay",
        "pattern",
        "1M",
        "rdelay=200ms",
    ]));
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; BS];
                let offset = (t * BS) as u64;
                h.pread(&mut buf, offset, nbd::CmdFlag::empty()).unwrap();
                // nbdkit's pattern: each 8-byte word holds its offset.
                assert_eq!(&buf[..8], &offset.to_be_bytes());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let took = start.elapsed();
    println!("sync overlap: {THREADS} reads of 200 ms each took {took:?}");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(
        took < Duration::from_millis(200 * THREADS as u64 / 2),
        "{THREADS} sync reads from {THREADS} threads took {took:?}: serialized"
    );
}
