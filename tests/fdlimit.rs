//! A process out of file descriptors: a synchronous command that cannot
//! create the eventfd for an unlocked wait falls back to waiting with the
//! handle locked (as libnbd does) and still returns the right data.
//!
//! A file of its own, since it lowers the process's fd limit.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;

#[test]
fn sync_read_without_a_free_fd() {
    if !common::have("nbdkit", "sync_read_without_a_free_fd") {
        return;
    }
    let h = common::nbdkit(&["pattern", "1M"]);
    // The lowest free fd number: the limit that leaves no fd to create.
    let probe = File::open("/dev/null").unwrap();
    let lowest_free = probe.as_raw_fd() as libc::rlim_t;
    drop(probe);
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let low = libc::rlimit {
            rlim_cur: lowest_free,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &low), 0);
    }
    let opened = File::open("/dev/null").map_err(|e| e.raw_os_error());
    let mut buf = vec![0u8; 4096];
    let read = h.pread(&mut buf, 8192, nbd::CmdFlag::empty());
    // SAFETY: as above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &old), 0) };
    assert_eq!(
        opened.err(),
        Some(Some(libc::EMFILE)),
        "the limit did not bite"
    );
    read.unwrap();
    assert_eq!(&buf[..8], &8192u64.to_be_bytes());
    // With fds available again, the unlocked wait works as usual.
    h.pread(&mut buf, 4096, nbd::CmdFlag::empty()).unwrap();
    assert_eq!(&buf[..8], &4096u64.to_be_bytes());
}
