//! Settings, export introspection, debug messages and statistics through
//! the safe Rust API, against real nbdkit servers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nbd::{Handle, HandshakeFlag, Shutdown, Size, Strict};

const FIXED_NEWSTYLE: HandshakeFlag = HandshakeFlag::FIXED_NEWSTYLE;
const NO_ZEROES: HandshakeFlag = HandshakeFlag::NO_ZEROES;
const STRICT_MASK: Strict = Strict::all();
const MIB: u64 = 1024 * 1024;

fn connect(h: &Handle, args: &[&str]) {
    let mut argv = vec!["nbdkit", "-s", "--exit-with-parent"];
    argv.extend_from_slice(args);
    h.connect_command(&argv)
        .expect("nbdkit must be installed (make check installs it)");
}

fn nbdkit(args: &[&str]) -> Handle {
    let h = Handle::new().unwrap();
    connect(&h, args);
    h
}

fn err_of<T: std::fmt::Debug>(r: nbd::Result<T>) -> (i32, String) {
    let e = r.expect_err("call should fail");
    (e.errno(), e.to_string())
}

/// Counts how often it is dropped: stands for a C callback's free function.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn defaults_before_connecting() {
    let h = Handle::new().unwrap();
    assert_eq!(h.handshake_flags(), FIXED_NEWSTYLE | NO_ZEROES);
    assert_eq!(h.strict_mode(), STRICT_MASK);
    assert!(h.pread_initialize());
    assert!(h.request_block_size());
    assert!(!h.full_info());
    assert_eq!(h.stats_bytes_sent(), 0);
    assert_eq!(h.stats_chunks_sent(), 0);
    assert_eq!(h.stats_bytes_received(), 0);
    assert_eq!(h.stats_chunks_received(), 0);

    // What only a connection can tell fails with ENOTCONN before one.
    let (errno, msg) = err_of(h.block_size(Size::Minimum));
    assert_eq!(errno, libc::ENOTCONN);
    assert!(
        msg.starts_with("invalid state: START: the handle must be negotiating"),
        "{msg}"
    );
    assert_eq!(err_of(h.canonical_export_name()).0, libc::ENOTCONN);
    assert_eq!(err_of(h.export_description()).0, libc::ENOTCONN);
    assert_eq!(err_of(h.is_rotational()).0, libc::ENOTCONN);
    assert_eq!(err_of(h.can_df()).0, libc::ENOTCONN);
    assert_eq!(err_of(h.can_fast_zero()).0, libc::ENOTCONN);
    assert_eq!(err_of(h.can_block_status_payload()).0, libc::ENOTCONN);
}

#[test]
fn setters_and_their_checks() {
    let h = Handle::new().unwrap();
    for bits in 0..=3 {
        let flags = HandshakeFlag::from_bits(bits).unwrap();
        h.set_handshake_flags(flags).unwrap();
        assert_eq!(h.handshake_flags(), flags);
    }
    // Bits libnbd does not know are refused, as in C.
    let (errno, msg) = err_of(h.set_handshake_flags(HandshakeFlag::from_bits_retain(4)));
    assert_eq!(errno, libc::EINVAL);
    assert_eq!(msg, "flags: invalid value for flag: 0x4: Invalid argument");
    assert_eq!(
        h.handshake_flags(),
        HandshakeFlag::all(),
        "a rejected value changes nothing"
    );

    h.set_strict_mode(Strict::empty()).unwrap();
    assert_eq!(h.strict_mode(), Strict::empty());
    h.set_strict_mode(STRICT_MASK).unwrap();
    let (errno, msg) = err_of(h.set_strict_mode(Strict::from_bits_retain(0x80)));
    assert_eq!(errno, libc::EINVAL);
    assert_eq!(msg, "flags: invalid value for flag: 0x80: Invalid argument");
    assert_eq!(h.strict_mode(), STRICT_MASK);

    h.set_pread_initialize(false).unwrap();
    assert!(!h.pread_initialize());
    h.set_request_block_size(false).unwrap();
    assert!(!h.request_block_size());
    h.set_full_info(true).unwrap();
    assert!(h.full_info());
}

#[test]
fn permitted_states_after_connecting() {
    let h = nbdkit(&["memory", "1M"]);
    let (errno, msg) = err_of(h.set_handshake_flags(FIXED_NEWSTYLE));
    assert_eq!(errno, libc::EINVAL);
    assert_eq!(
        msg,
        "invalid state: READY: the handle must be newly created: Invalid argument"
    );
    let (errno, msg) = err_of(h.set_request_block_size(false));
    assert_eq!(errno, libc::EINVAL);
    assert!(msg.ends_with("the handle must be newly created, or negotiating: Invalid argument"));
    assert_eq!(err_of(h.set_full_info(true)).0, libc::EINVAL);
    assert!(h.request_block_size() && !h.full_info());

    // Allowed in any state.
    h.set_strict_mode(Strict::COMMANDS).unwrap();
    assert_eq!(h.strict_mode(), Strict::COMMANDS);
    h.set_pread_initialize(false).unwrap();
    assert!(!h.pread_initialize());

    // Introspection still works once the connection is shut down.
    h.shutdown(Shutdown::empty()).unwrap();
    assert!(h.aio_is_closed());
    assert_eq!(h.block_size(Size::Minimum).unwrap(), None);
    assert!(!h.is_rotational().unwrap());
}

#[test]
fn plain_memory_export() {
    let h = nbdkit(&["memory", "1M"]);
    assert!(!h.is_rotational().unwrap());
    assert!(h.can_df().unwrap(), "structured replies give DF");
    assert!(h.can_fast_zero().unwrap());
    assert!(!h.can_block_status_payload().unwrap());
    // No block sizes from this server: 0, and a 32M payload limit.
    assert_eq!(h.block_size(Size::Minimum).unwrap(), None);
    assert_eq!(h.block_size(Size::Preferred).unwrap(), None);
    assert_eq!(h.block_size(Size::Maximum).unwrap(), None);
    assert_eq!(h.block_size(Size::Payload).unwrap(), Some(32 * MIB));
    assert_eq!(h.export_description().unwrap(), None);
    assert_eq!(h.canonical_export_name().unwrap(), None);
}

#[test]
fn block_sizes_from_blocksize_policy() {
    let policy = [
        "--filter=blocksize-policy",
        "memory",
        "1M",
        "blocksize-minimum=4096",
        "blocksize-preferred=65536",
        "blocksize-maximum=1048576",
    ];
    let h = nbdkit(&policy);
    assert_eq!(h.block_size(Size::Minimum).unwrap(), Some(4096));
    assert_eq!(h.block_size(Size::Preferred).unwrap(), Some(65536));
    assert_eq!(h.block_size(Size::Maximum).unwrap(), Some(MIB));
    assert_eq!(h.block_size(Size::Payload).unwrap(), Some(MIB));

    // A small maximum still allows 1M payloads.
    let h = nbdkit(&[
        "--filter=blocksize-policy",
        "memory",
        "1M",
        "blocksize-minimum=512",
        "blocksize-preferred=4096",
        "blocksize-maximum=65536",
    ]);
    assert_eq!(h.block_size(Size::Maximum).unwrap(), Some(65536));
    assert_eq!(h.block_size(Size::Payload).unwrap(), Some(MIB));

    // Not asking: this server then sends none.
    let h = Handle::new().unwrap();
    h.set_request_block_size(false).unwrap();
    connect(&h, &policy);
    assert_eq!(h.block_size(Size::Minimum).unwrap(), None);
    assert_eq!(h.block_size(Size::Payload).unwrap(), Some(32 * MIB));
}

#[test]
fn canonical_name_and_description() {
    let args = [
        "--filter=exportname",
        "memory",
        "1M",
        "exportdesc=fixed:a test export",
    ];
    let h = Handle::new().unwrap();
    h.set_full_info(true).unwrap();
    connect(&h, &args);
    assert_eq!(h.export_description().unwrap().unwrap(), b"a test export");
    assert_eq!(h.canonical_export_name().unwrap().unwrap(), b"");

    // Without full info this server keeps the description to itself.
    let h = nbdkit(&args);
    assert_eq!(h.export_description().unwrap(), None);
}

#[test]
fn oldstyle_server_gives_no_details() {
    let h = Handle::new().unwrap();
    h.set_full_info(true).unwrap();
    connect(&h, &["-o", "memory", "1M"]);
    assert_eq!(h.protocol().unwrap(), "oldstyle");
    assert_eq!(h.canonical_export_name().unwrap(), None);
    assert_eq!(h.export_description().unwrap(), None);
    assert_eq!(h.block_size(Size::Minimum).unwrap(), None);
    assert_eq!(h.block_size(Size::Payload).unwrap(), Some(32 * MIB));
    assert!(!h.can_df().unwrap(), "no structured replies on oldstyle");
}

#[test]
fn export_flags_follow_the_server() {
    let h = nbdkit(&["--no-sr", "memory", "1M"]);
    assert!(!h.can_df().unwrap(), "DF needs structured replies");
    assert!(h.can_fast_zero().unwrap());

    let h = nbdkit(&[
        "-r",
        "eval",
        "get_size=echo 1048576",
        "pread=dd if=/dev/zero count=$3 iflag=count_bytes status=none",
        "is_rotational=exit 0",
    ]);
    assert!(h.is_rotational().unwrap());
    assert!(h.is_read_only().unwrap());
    assert!(!h.can_fast_zero().unwrap());
}

#[test]
fn statistics_count_traffic() {
    let h = Handle::new().unwrap();
    connect(&h, &["memory", "1M"]);
    let (bs1, cs1, br1, cr1) = (
        h.stats_bytes_sent(),
        h.stats_chunks_sent(),
        h.stats_bytes_received(),
        h.stats_chunks_received(),
    );
    assert!(
        cs1 > 0 && bs1 > cs1,
        "handshake sent {bs1} bytes in {cs1} chunks"
    );
    assert!(
        cr1 > 0 && br1 > cr1,
        "handshake got {br1} bytes in {cr1} chunks"
    );

    // A flush is one request out and one reply back.
    h.flush(nbd::CmdFlag::empty()).unwrap();
    let header = if h.extended_headers_negotiated().unwrap() {
        32
    } else {
        28
    };
    assert_eq!(h.stats_chunks_sent(), cs1 + 1);
    assert_eq!(h.stats_bytes_sent(), bs1 + header);
    assert_eq!(h.stats_chunks_received(), cr1 + 1);
    assert!(h.stats_bytes_received() >= br1 + 16);

    // A read brings at least its data; a write sends its payload.
    let (bs2, br2) = (h.stats_bytes_sent(), h.stats_bytes_received());
    let mut buf = vec![0u8; 64 * 1024];
    h.pread(&mut buf, 0, nbd::CmdFlag::empty()).unwrap();
    assert!(h.stats_bytes_received() >= br2 + buf.len() as u64);
    h.pwrite(&buf, 0, nbd::CmdFlag::empty()).unwrap();
    assert!(h.stats_bytes_sent() >= bs2 + header * 2 + buf.len() as u64);

    // A request the client rejects (out of bounds) sends nothing.
    let (bs3, cs3) = (h.stats_bytes_sent(), h.stats_chunks_sent());
    assert_eq!(
        err_of(h.pread(&mut buf, MIB, nbd::CmdFlag::empty())).0,
        libc::EINVAL
    );
    assert_eq!((h.stats_bytes_sent(), h.stats_chunks_sent()), (bs3, cs3));

    // The disconnect is counted too, and the counters outlive the connection.
    h.shutdown(Shutdown::empty()).unwrap();
    assert_eq!(h.stats_chunks_sent(), cs3 + 1);
    assert_eq!(h.stats_bytes_sent(), bs3 + header);
}

#[test]
fn debug_callback_sees_the_handshake_and_commands() {
    let h = Handle::new().unwrap();
    h.set_handle_name("settings-test").unwrap();
    h.set_debug(true).unwrap();
    let lines = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let drops = Arc::new(AtomicUsize::new(0));
    let sink = lines.clone();
    let guard = DropCount(drops.clone());
    h.set_debug_callback(move |context, msg| {
        let _keep = &guard;
        sink.lock()
            .unwrap()
            .push((context.to_string(), msg.to_string()));
    })
    .unwrap();
    connect(&h, &["memory", "1M"]);
    h.flush(nbd::CmdFlag::empty()).unwrap();
    {
        let lines = lines.lock().unwrap();
        let has = |s: &str| lines.iter().any(|(_, m)| m.contains(s));
        assert!(has("transition: START -> "), "{lines:?}");
        assert!(has("-> READY"), "{lines:?}");
        assert!(has("issuing command: NBD_CMD_FLUSH"), "{lines:?}");
        assert!(has("command completed: NBD_CMD_FLUSH"), "{lines:?}");
        assert!(has("poll start:"), "{lines:?}");
        // Outside the C API there is no call name to show.
        assert!(lines.iter().all(|(c, _)| c == "unknown"), "{lines:?}");
    }

    // Replacing the callback drops the old one, once.
    let drops2 = Arc::new(AtomicUsize::new(0));
    let guard2 = DropCount(drops2.clone());
    h.set_debug_callback(move |_, _| {
        let _keep = &guard2;
    })
    .unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    let before = lines.lock().unwrap().len();
    h.flush(nbd::CmdFlag::empty()).unwrap();
    assert_eq!(
        lines.lock().unwrap().len(),
        before,
        "old callback not called"
    );

    // Clearing drops it; clearing again does nothing.
    h.clear_debug_callback().unwrap();
    assert_eq!(drops2.load(Ordering::SeqCst), 1);
    h.clear_debug_callback().unwrap();

    // A callback still set at close is dropped then.
    let drops3 = Arc::new(AtomicUsize::new(0));
    let guard3 = DropCount(drops3.clone());
    h.set_debug_callback(move |_, _| {
        let _keep = &guard3;
    })
    .unwrap();
    drop(h);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(drops2.load(Ordering::SeqCst), 1);
    assert_eq!(drops3.load(Ordering::SeqCst), 1);
}

#[test]
fn debug_off_calls_nothing() {
    let h = Handle::new().unwrap();
    h.set_debug(false).unwrap();
    assert!(!h.debug());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    h.set_debug_callback(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    connect(&h, &["memory", "1M"]);
    h.flush(nbd::CmdFlag::empty()).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// What libnbd 1.14 does (checked against it): the handshake uses only
/// the flags allowed, and afterwards reports those the server agreed to
/// (none for an oldstyle server).
#[test]
fn handshake_flags_are_honoured() {
    let h = Handle::new().unwrap();
    h.set_handshake_flags(HandshakeFlag::empty()).unwrap();
    connect(&h, &["memory", "1M"]);
    assert_eq!(h.protocol().unwrap(), "newstyle");
    assert_eq!(h.handshake_flags(), HandshakeFlag::empty());

    let h = Handle::new().unwrap();
    h.set_handshake_flags(NO_ZEROES).unwrap();
    connect(&h, &["memory", "1M"]);
    assert_eq!(h.protocol().unwrap(), "newstyle");
    assert!(!h.structured_replies_negotiated().unwrap());
    assert_eq!(h.handshake_flags(), NO_ZEROES);

    let h = nbdkit(&["memory", "1M"]);
    assert_eq!(h.handshake_flags(), FIXED_NEWSTYLE | NO_ZEROES);

    let h = nbdkit(&["-o", "memory", "1M"]);
    assert_eq!(h.handshake_flags(), HandshakeFlag::empty());
}

/// The spin budget: opt-in, 0 by default (unless the environment sets one
/// on a machine with two or more CPUs online), settable, and 0 turns
/// spinning off. Reads
/// give the same bytes either way.
#[test]
fn spin_budget() {
    let h = nbdkit(&["pattern", "1M"]);
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    match std::env::var("LIBNBD_SPIN_USEC") {
        Ok(v) if cpus > 1 => assert_eq!(h.spin_usec(), v.trim().parse::<u32>().unwrap_or(0)),
        _ => assert_eq!(h.spin_usec(), 0),
    }
    let mut reads = Vec::new();
    for usec in [0, 1000, 50] {
        h.set_spin_usec(usec);
        assert_eq!(h.spin_usec(), usec);
        let mut buf = vec![0u8; 4096];
        for _ in 0..100 {
            h.pread(&mut buf, 8192, nbd::CmdFlag::empty()).unwrap();
        }
        reads.push(buf);
    }
    // nbdkit's pattern: each 8-byte word holds its offset, big-endian.
    assert_eq!(&reads[0][..8], &8192u64.to_be_bytes());
    assert!(reads.iter().all(|r| r == &reads[0]));
}
