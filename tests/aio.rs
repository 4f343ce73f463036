//! The asynchronous API through the safe Rust API, against real nbdkit
//! servers: closures as callbacks (dropped exactly once), structured reads,
//! and one handle shared by four threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nbd::{Chunk, Completion, Handle};

fn nbdkit(args: &[&str]) -> Handle {
    let h = Handle::new().unwrap();
    let mut argv = vec!["nbdkit", "-s", "--exit-with-parent"];
    argv.extend_from_slice(args);
    h.connect_command(&argv)
        .expect("nbdkit must be installed (make check installs it)");
    h
}

/// The byte at `offset` of nbdkit's pattern plugin: each 8-byte big-endian
/// word holds its own offset.
fn pattern_byte(offset: u64) -> u8 {
    let word = offset & !7;
    word.to_be_bytes()[(offset % 8) as usize]
}

/// A buffer handed to a completion callback to free.
struct SendPtr(*mut [u8]);
// SAFETY: only the callback touches it, once the command is done.
unsafe impl Send for SendPtr {}

impl SendPtr {
    fn take(&self) -> *mut [u8] {
        self.0
    }
}

/// Counts how often it is dropped: stands for a C callback's free function.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn aio_closures_called_and_dropped_once() {
    let h = nbdkit(&["memory", "4M"]);
    const N: usize = 64;
    const BS: usize = 16 * 1024;
    let calls = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let wbufs: Vec<Vec<u8>> = (0..N).map(|i| vec![i as u8 ^ 0x5a; BS]).collect();
    let mut cookies = Vec::new();
    for (i, buf) in wbufs.iter().enumerate() {
        let calls = calls.clone();
        let guard = DropCount(drops.clone());
        let retire = i % 2;
        let cb = Completion::new(move |err| {
            let _keep = &guard;
            assert_eq!(*err, 0);
            calls.fetch_add(1, Ordering::SeqCst);
            retire as i32
        });
        // SAFETY: wbufs outlives every command (we wait for all below).
        let cookie = unsafe {
            h.aio_pwrite(
                buf.as_ptr(),
                BS,
                (i * BS) as u64,
                Some(cb),
                nbd::CmdFlag::empty(),
            )
        }
        .unwrap();
        cookies.push(cookie);
    }
    while h.aio_in_flight().unwrap() > 0 {
        assert_eq!(h.poll(10_000).unwrap(), 1);
    }
    assert_eq!(calls.load(Ordering::SeqCst), N);
    // Auto-retired commands have already dropped their closures.
    assert_eq!(drops.load(Ordering::SeqCst), N / 2);
    for (i, cookie) in cookies.iter().enumerate() {
        if i % 2 == 0 {
            assert!(h.aio_command_completed(*cookie as i64).unwrap());
        }
    }
    assert_eq!(drops.load(Ordering::SeqCst), N);
    assert_eq!(
        h.aio_peek_command_completed().unwrap_err().errno(),
        libc::EINVAL
    );

    let mut rbuf = vec![0u8; N * BS];
    h.pread(&mut rbuf, 0, nbd::CmdFlag::empty()).unwrap();
    for (i, chunk) in rbuf.chunks(BS).enumerate() {
        assert!(chunk.iter().all(|&b| b == i as u8 ^ 0x5a), "block {i}");
    }
}

#[test]
fn pread_structured_chunks_cover_the_range() {
    let h = nbdkit(&["pattern", "1M"]);
    let seen = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let mut buf = vec![0u8; 300 * 1024];
    let offset = 4096 + 8;
    let s = seen.clone();
    let guard = DropCount(drops.clone());
    let chunk = Chunk::new(move |data, off, status, err| {
        let _keep = &guard;
        assert_eq!(status, 1, "pattern has only data");
        assert_eq!(*err, 0);
        for (k, &b) in data.iter().enumerate() {
            assert_eq!(b, pattern_byte(off + k as u64));
        }
        s.fetch_add(data.len(), Ordering::SeqCst);
        0
    });
    h.pread_structured(&mut buf, offset, chunk, nbd::CmdFlag::empty())
        .unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), buf.len());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    for (k, &b) in buf.iter().enumerate() {
        assert_eq!(b, pattern_byte(offset + k as u64), "byte {k}");
    }
}

#[test]
fn chunk_callback_error_fails_the_command() {
    let h = nbdkit(&["pattern", "1M"]);
    let mut buf = vec![0u8; 4096];
    let chunk = Chunk::new(|_, _, _, err| {
        *err = libc::ENOMEDIUM;
        -1
    });
    let err = h
        .pread_structured(&mut buf, 0, chunk, nbd::CmdFlag::empty())
        .unwrap_err();
    assert_eq!(err.errno(), libc::ENOMEDIUM);
    assert_eq!(err.message(), "read: command failed");
    // The connection is still good.
    h.pread(&mut buf, 0, nbd::CmdFlag::empty()).unwrap();
}

#[test]
fn four_threads_share_one_handle() {
    const THREADS: usize = 4;
    const OPS: usize = 200;
    const BS: usize = 4096;
    let h = Arc::new(nbdkit(&["memory", "8M"]));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                let base = (t * OPS * BS) as u64;
                for i in 0..OPS {
                    let fill = (t * 31 + i) as u8;
                    let off = base + (i * BS) as u64;
                    if i % 3 == 0 {
                        // An async write, retired by the completion callback.
                        let buf = vec![fill; BS].into_boxed_slice();
                        let ptr = Box::into_raw(buf);
                        let owned = SendPtr(ptr);
                        let cb = Completion::new(move |err| {
                            assert_eq!(*err, 0);
                            // SAFETY: the pointer came from Box::into_raw above
                            // and the command is complete, so nothing uses it.
                            drop(unsafe { Box::from_raw(owned.take()) });
                            1
                        });
                        // SAFETY: the buffer lives until the callback frees it.
                        unsafe {
                            h.aio_pwrite(ptr as *const u8, BS, off, Some(cb), nbd::CmdFlag::empty())
                        }
                        .unwrap();
                        while h.aio_in_flight().unwrap() > 0 {
                            let _ = h.poll(100).unwrap();
                        }
                    } else {
                        h.pwrite(&vec![fill; BS], off, nbd::CmdFlag::empty())
                            .unwrap();
                    }
                    let mut back = vec![0u8; BS];
                    h.pread(&mut back, off, nbd::CmdFlag::empty()).unwrap();
                    assert!(back.iter().all(|&b| b == fill), "thread {t} op {i}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut all = vec![0u8; THREADS * OPS * BS];
    h.pread(&mut all, 0, nbd::CmdFlag::empty()).unwrap();
    for (t, region) in all.chunks(OPS * BS).enumerate() {
        for (i, block) in region.chunks(BS).enumerate() {
            let fill = (t * 31 + i) as u8;
            assert!(block.iter().all(|&b| b == fill), "thread {t} block {i}");
        }
    }
}

#[test]
fn aio_errors_and_states() {
    let h = Handle::new().unwrap();
    let mut buf = [0u8; 512];
    // Not connected: the callback is dropped (freed) at once, never called.
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = DropCount(drops.clone());
    let cb = Completion::new(move |_| {
        let _keep = &guard;
        panic!("must not be called");
    });
    // SAFETY: the command is never issued.
    let err = unsafe { h.aio_pread(buf.as_mut_ptr(), 512, 0, Some(cb), nbd::CmdFlag::empty()) }
        .unwrap_err();
    assert_eq!(err.errno(), libc::ENOTCONN);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(h.aio_get_fd().unwrap_err().errno(), libc::EINVAL);
    assert_eq!(
        h.aio_command_completed(0).unwrap_err().message(),
        "invalid aio cookie 0"
    );
    assert_eq!(h.aio_get_direction(), nbd::Direction::empty());

    let h = nbdkit(&["memory", "1M"]);
    assert_eq!(h.aio_in_flight().unwrap(), 0);
    assert_eq!(
        h.aio_get_direction(),
        nbd::Direction::READ,
        "idle: waiting to read"
    );
    // SAFETY: we wait for the command before buf goes away.
    let cookie =
        unsafe { h.aio_pread(buf.as_mut_ptr(), 512, 0, None, nbd::CmdFlag::empty()) }.unwrap();
    // libnbd numbers a handle's commands 1, 2, 3, ...
    assert_eq!(cookie, 1);
    while !h.aio_command_completed(cookie as i64).unwrap() {
        h.poll(-1).unwrap();
    }
    // Unknown or already retired cookies are simply not complete.
    assert!(!h.aio_command_completed(cookie as i64).unwrap());
    h.aio_disconnect(nbd::CmdFlag::empty()).unwrap();
    assert_eq!(
        h.aio_flush(None, nbd::CmdFlag::empty())
            .unwrap_err()
            .message(),
        "cannot request more commands after NBD_CMD_DISC"
    );
    while !h.aio_is_closed() {
        h.poll(10_000).unwrap();
    }
    assert_eq!(h.aio_in_flight().unwrap(), 0);
}
