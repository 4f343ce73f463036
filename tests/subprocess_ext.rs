//! Beyond libnbd, the subprocess: an explicit environment, a
//! `std::process::Command`, the server's stderr captured into errors,
//! and a close that does not wait for the subprocess. Real nbdkit
//! servers, and shell commands that fail the way servers do.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::have;
use nbd::Handle;

fn path_var() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
}

#[test]
fn environment_is_exactly_the_one_given() {
    if !have("nbdkit", "environment_is_exactly_the_one_given") {
        return;
    }
    // The size comes from the environment, and nothing of ours is in it.
    let script =
        r#"test -z "$HOME" || exit 3; exec nbdkit -s --exit-with-parent memory "$DISK_SIZE""#;
    let h = Handle::new().unwrap();
    h.connect_command_env(
        &["sh", "-c", script],
        &[format!("PATH={}", path_var()), "DISK_SIZE=2M".into()],
    )
    .unwrap();
    assert_eq!(h.size().unwrap(), 2 << 20);
    assert!(h.subprocess_pid().unwrap() > 0);
    h.shutdown(nbd::Shutdown::empty()).unwrap();

    // Without the variable the server fails to start.
    let h = Handle::new().unwrap();
    let e = h
        .connect_command_env(&["sh", "-c", script], &[format!("PATH={}", path_var())])
        .unwrap_err();
    assert_eq!(e.message(), "recv: server disconnected unexpectedly");
}

#[test]
fn std_process_command() {
    if !have("nbdkit", "std_process_command") {
        return;
    }
    let dir = common::TempDir::new("process");
    let mut cmd = Command::new("nbdkit");
    cmd.args(["-s", "--exit-with-parent", "memory", "3M"])
        .env_clear()
        .env("PATH", path_var())
        .current_dir(dir.path(""));
    let h = Handle::new().unwrap();
    h.connect_process(&mut cmd).unwrap();
    assert_eq!(h.size().unwrap(), 3 << 20);
    let pid = h.subprocess_pid().unwrap();
    assert!(pid > 0);
    h.pwrite(b"through a Command", 0, nbd::CmdFlag::empty())
        .unwrap();
    let mut back = [0u8; 17];
    h.pread(&mut back, 0, nbd::CmdFlag::empty()).unwrap();
    assert_eq!(&back, b"through a Command");
    // nbd_kill_subprocess works on it as on nbd_connect_command's (SIGKILL:
    // nbdkit may serve one more request after SIGTERM).
    h.kill_subprocess(libc::SIGKILL).unwrap();
    assert!(h.pread(&mut back, 0, nbd::CmdFlag::empty()).is_err());

    // A program that cannot be run is an error at once.
    let h = Handle::new().unwrap();
    let e = h
        .connect_process(&mut Command::new("/nonexistent/server"))
        .unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT);
    assert!(h.aio_is_created() || h.aio_is_dead());
}

#[test]
fn captured_stderr_explains_a_failed_server() {
    if !have("nbdkit", "captured_stderr_explains_a_failed_server") {
        return;
    }
    // Default, as libnbd: nothing added to the message.
    let h = Handle::new().unwrap();
    assert!(!h.capture_stderr());
    let e = h
        .connect_command(&["sh", "-c", "echo 'server: no disk' >&2; exit 1"])
        .unwrap_err();
    assert_eq!(e.message(), "recv: server disconnected unexpectedly");

    // Captured: how it ended and what it said last.
    let h = Handle::new().unwrap();
    h.set_capture_stderr(true).unwrap();
    let e = h
        .connect_command(&[
            "sh",
            "-c",
            "echo one >&2; echo 'server: no disk' >&2; exit 1",
        ])
        .unwrap_err();
    assert_eq!(
        e.message(),
        "recv: server disconnected unexpectedly: sh exited with status 1: one; server: no disk"
    );
    assert!(h.aio_is_dead());

    // A real nbdkit that cannot start.
    let h = Handle::new().unwrap();
    h.set_capture_stderr(true).unwrap();
    let e = h
        .connect_command(&["nbdkit", "-s", "--exit-with-parent", "no-such-plugin"])
        .unwrap_err();
    assert!(
        e.message().starts_with(
            "recv: server disconnected unexpectedly: nbdkit exited with status 1: nbdkit: error:"
        ),
        "{e}"
    );
    let said = h.subprocess_stderr().expect("nbdkit said why");
    assert!(said.starts_with("nbdkit: error:"), "{said}");

    // A server that works and talks: its last lines can be read.
    let h = Handle::new().unwrap();
    h.set_capture_stderr(true).unwrap();
    h.connect_command(&[
        "sh",
        "-c",
        "echo 'starting up' >&2; exec nbdkit -s --exit-with-parent memory 1M",
    ])
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.subprocess_stderr().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(h.subprocess_stderr().as_deref(), Some("starting up"));
    assert_eq!(h.size().unwrap(), 1 << 20);

    // Settings are fixed once connecting.
    assert_eq!(
        h.set_capture_stderr(false).unwrap_err().errno(),
        libc::EINVAL
    );
}

/// Whether process `pid` is gone (reaped, not even a zombie).
fn gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == -1
}

#[test]
fn close_without_waiting_for_the_subprocess() {
    if !have("nbdkit", "close_without_waiting_for_the_subprocess") {
        return;
    }
    // A server that lingers after its connection closes, deaf to SIGTERM.
    let lingering = ["sh", "-c", "trap '' TERM; nbdkit -s memory 1M; sleep 30"];
    // As libnbd: close waits (2 s, SIGTERM, 2 s, SIGKILL).
    let h = Handle::new().unwrap();
    assert!(h.close_waits_for_subprocess());
    h.connect_command(&lingering).unwrap();
    let pid = h.subprocess_pid().unwrap();
    let start = Instant::now();
    drop(h);
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(gone(pid));

    // Not waiting: close returns at once, and the child is still reaped.
    let h = Handle::new().unwrap();
    h.set_close_waits_for_subprocess(false);
    assert!(!h.close_waits_for_subprocess());
    h.connect_command(&lingering).unwrap();
    let pid = h.subprocess_pid().unwrap();
    let start = Instant::now();
    drop(h);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gone(pid) {
        assert!(
            Instant::now() < deadline,
            "subprocess {pid} was never reaped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
