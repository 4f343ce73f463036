//! The Rust examples (examples/*.rs) against real nbdkit servers: each is
//! built with cargo, run, and its output checked.

mod common;

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;

use common::{Server, TempDir};

/// Builds the examples in this test's profile; returns their directory.
fn examples_dir() -> PathBuf {
    // target/PROFILE/deps/examples-HASH
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--examples", "--quiet"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        cargo.env("CARGO_TARGET_DIR", target);
    }
    let status = cargo.status().expect("run cargo");
    assert!(status.success(), "cargo build --examples failed");
    profile_dir.join("examples")
}

fn run(dir: &std::path::Path, name: &str, args: &[&str]) -> String {
    let out = Command::new(dir.join(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn examples_run_against_nbdkit() {
    let dir = examples_dir();
    let tmp = TempDir::new("examples");
    let sock = tmp.path("sock");
    let s = sock.to_str().unwrap().to_string();
    // The pattern plugin: each 8-byte word holds its own offset.
    let _server = Server::start("nbdkit", &["-f", "-U", &s, "pattern", "1M"], || {
        UnixStream::connect(&sock).is_ok()
    });
    let uri = format!("nbd+unix:///?socket={s}");

    assert_eq!(run(&dir, "get_size", &[&uri]), "1048576\n");

    let dump = run(&dir, "read_first_sector", &[&uri]);
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 32, "{dump}");
    assert_eq!(
        lines[0],
        "00000000  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 08  |................|"
    );
    assert_eq!(
        lines[31],
        "000001f0  00 00 00 00 00 00 01 f0 00 00 00 00 00 00 01 f8  |................|"
    );

    // A bad URI: a failure with the library's message, not a panic.
    let out = Command::new(dir.join("get_size"))
        .arg("nbd+unix:///?socket=/nonexistent/sock")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&dir, "connect_command", &[]);
    assert!(out.contains("size 1048576"), "{out}");
    assert!(out.contains("read back matches: true"), "{out}");
    assert!(out.contains("base:allocation: "), "{out}");

    let out = run(&dir, "read_write", &[]);
    assert!(out.contains("read back 512 bytes: ok"), "{out}");
}
