//! The typed Rust API against real nbdkit servers: flag sets and enums
//! through the setters and getters, typed errors (errno, message,
//! is_fatal, conversion to std::io::Error), Option getters, and lists as
//! values (opt_list_exports, meta contexts, block_status_extents).
//!
//! Each nbdkit runs as the handle's subprocess (`connect_command`, with
//! --exit-with-parent) and is stopped by pid when the handle closes.

mod common;

use common::nbdkit;
use nbd::{
    AllowTransport, CmdFlag, Direction, Export, Handle, HandshakeFlag, Shutdown, Size, Strict, Tls,
};

const MIB: u64 = 1024 * 1024;

#[test]
fn flag_sets_and_enums_round_trip() {
    let h = Handle::new().unwrap();
    assert_eq!(h.handshake_flags(), HandshakeFlag::all());
    for flags in [
        HandshakeFlag::empty(),
        HandshakeFlag::NO_ZEROES,
        HandshakeFlag::FIXED_NEWSTYLE,
    ] {
        h.set_handshake_flags(flags).unwrap();
        assert_eq!(h.handshake_flags(), flags);
    }

    assert_eq!(h.strict_mode(), Strict::all());
    let strict = Strict::BOUNDS | Strict::ZERO_SIZE;
    h.set_strict_mode(strict).unwrap();
    assert_eq!(h.strict_mode(), strict);
    assert!(!h.strict_mode().contains(Strict::COMMANDS));

    assert_eq!(h.uri_allow_transports(), AllowTransport::all());
    h.set_uri_allow_transports(AllowTransport::UNIX | AllowTransport::TCP)
        .unwrap();
    assert_eq!(
        h.uri_allow_transports(),
        AllowTransport::UNIX | AllowTransport::TCP
    );

    assert_eq!(h.tls(), Tls::Disable);
    for tls in [Tls::Allow, Tls::Require, Tls::Disable] {
        h.set_tls(tls).unwrap();
        assert_eq!(h.tls(), tls);
    }
    assert_eq!(h.uri_allow_tls(), Tls::Allow);
    h.set_uri_allow_tls(Tls::Require).unwrap();
    assert_eq!(h.uri_allow_tls(), Tls::Require);

    // Unknown bits (from_bits_retain) get libnbd's EINVAL and change nothing.
    let e = h
        .set_strict_mode(Strict::from_bits_retain(0x100))
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert_eq!(e.message(), "flags: invalid value for flag: 0x100");
    assert!(!e.is_fatal());
    assert_eq!(h.strict_mode(), strict);

    // The types print their flags' names.
    assert_eq!(format!("{:?}", Tls::Require), "Require");
    assert!(format!("{:?}", CmdFlag::FUA | CmdFlag::NO_HOLE).contains("NO_HOLE"));
}

#[test]
fn command_flags_on_a_real_server() {
    let h = nbdkit(&["memory", "1M"]);
    assert!(h.can_fua().unwrap());
    h.pwrite(&[7u8; 4096], 0, CmdFlag::FUA).unwrap();
    h.zero(4096, 4096, CmdFlag::NO_HOLE | CmdFlag::FUA).unwrap();
    let mut buf = [0u8; 8192];
    h.pread(&mut buf, 0, CmdFlag::empty()).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 7));
    assert!(buf[4096..].iter().all(|&b| b == 0));
    h.flush(CmdFlag::empty()).unwrap();

    // A flag the command does not take: EINVAL, the connection stays up.
    let e = h.pread(&mut buf, 0, CmdFlag::FUA).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert_eq!(e.message(), "flags: invalid value for flag: 0x1");
    assert!(!e.is_fatal());
    assert!(h.aio_is_ready());

    // Idle: the state machine waits to read.
    assert_eq!(h.aio_get_direction(), Direction::READ);

    let e = h.shutdown(Shutdown::from_bits_retain(1)).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    h.shutdown(Shutdown::ABANDON_PENDING).unwrap();
    assert!(h.aio_is_closed());
}

#[test]
fn typed_errors() {
    let h = nbdkit(&["memory", "1M"]);
    let mut buf = [0u8; 512];

    // Out of bounds: not fatal, the errno goes into std::io::Error.
    let e = h.pread(&mut buf, MIB, CmdFlag::empty()).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert_eq!(e.message(), "request out of bounds");
    assert_eq!(e.to_string(), "request out of bounds: Invalid argument");
    assert!(!e.is_fatal());
    let io: std::io::Error = e.into();
    assert_eq!(io.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    h.pread(&mut buf, 0, CmdFlag::empty()).unwrap();

    // The `?` operator converts in functions returning io::Result.
    fn read_past_end(h: &Handle) -> std::io::Result<()> {
        let mut buf = [0u8; 1];
        h.pread(&mut buf, 2 * MIB, CmdFlag::empty())?;
        Ok(())
    }
    assert_eq!(
        read_past_end(&h).unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );

    // The server dies: the command's error is fatal, and so is every
    // later one; the handle is dead.
    assert!(h.subprocess_pid().is_some());
    h.kill_subprocess(libc::SIGKILL).unwrap();
    let e = h.pread(&mut buf, 0, CmdFlag::empty()).unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert_ne!(e.errno(), 0, "{e}");
    assert!(h.aio_is_dead());
    assert_eq!(h.fatal_error().map(|f| f.is_fatal()), Some(true));
    let e = h.pread(&mut buf, 0, CmdFlag::empty()).unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert!(e.message().starts_with("invalid state: DEAD"), "{e}");
}

#[test]
fn option_getters() {
    let h = Handle::new().unwrap();
    assert_eq!(h.subprocess_pid(), None);
    assert_eq!(h.tls_hostname(), None);
    h.set_tls_hostname("server.example").unwrap();
    assert_eq!(h.tls_hostname().as_deref(), Some("server.example"));
    assert_eq!(h.export_name(), b"");

    // No block sizes, no description, no canonical name from this server.
    let h = nbdkit(&["memory", "1M"]);
    assert!(h.subprocess_pid().is_some_and(|pid| pid > 0));
    assert_eq!(h.block_size(Size::Minimum).unwrap(), None);
    assert_eq!(h.block_size(Size::Preferred).unwrap(), None);
    assert_eq!(h.block_size(Size::Maximum).unwrap(), None);
    assert_eq!(h.block_size(Size::Payload).unwrap(), Some(32 * MIB));
    assert_eq!(h.export_description().unwrap(), None);
    assert_eq!(h.canonical_export_name().unwrap(), None);

    // A server that sends them all.
    let h = Handle::new().unwrap();
    h.set_full_info(true).unwrap();
    h.set_export_name(b"blue").unwrap();
    common::nbdkit_on(
        &h,
        &[
            "--filter=exportname",
            "--filter=blocksize-policy",
            "memory",
            "1M",
            "exportname=blue",
            "exportdesc=fixed:the blue one",
            "blocksize-minimum=512",
            "blocksize-preferred=4096",
            "blocksize-maximum=65536",
        ],
    );
    assert_eq!(h.block_size(Size::Minimum).unwrap(), Some(512));
    assert_eq!(h.block_size(Size::Preferred).unwrap(), Some(4096));
    assert_eq!(h.block_size(Size::Maximum).unwrap(), Some(65536));
    assert_eq!(
        h.export_description().unwrap().as_deref(),
        Some(&b"the blue one"[..])
    );
    assert_eq!(h.export_name(), b"blue");

    // Before connecting, these are state errors, not None.
    let h = Handle::new().unwrap();
    assert_eq!(
        h.block_size(Size::Minimum).unwrap_err().errno(),
        libc::ENOTCONN
    );
    assert_eq!(h.export_description().unwrap_err().errno(), libc::ENOTCONN);
}

#[test]
fn lists_as_values() {
    let h = Handle::new().unwrap();
    h.set_opt_mode(true).unwrap();
    h.add_meta_context("base:allocation").unwrap();
    assert_eq!(h.meta_contexts(), ["base:allocation"]);
    common::nbdkit_on(
        &h,
        &[
            "--filter=exportname",
            "memory",
            "1M",
            "exportname-list=explicit",
            "exportname=red",
            "exportname=green",
            "exportdesc=fixed:a colour",
        ],
    );
    assert!(h.aio_is_negotiating());
    let mut exports = h.opt_list_exports().unwrap();
    exports.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        exports,
        [
            Export {
                name: "green".into(),
                description: "a colour".into()
            },
            Export {
                name: "red".into(),
                description: "a colour".into()
            },
        ]
    );
    h.set_export_name(b"red").unwrap();
    assert_eq!(h.opt_list_meta_contexts().unwrap(), ["base:allocation"]);
    assert_eq!(h.opt_set_meta_contexts().unwrap(), ["base:allocation"]);
    h.opt_go().unwrap();
    assert!(h.can_meta_context("base:allocation").unwrap());

    // Data in the first 64K, the rest a hole.
    h.pwrite(&[1u8; 65536], 0, CmdFlag::empty()).unwrap();
    let status = h.block_status_extents(MIB, 0, CmdFlag::empty()).unwrap();
    assert_eq!(status.len(), 1, "{status:?}");
    let ctx = &status[0];
    assert_eq!(ctx.context, "base:allocation");
    assert_eq!(ctx.offset, 0);
    assert_eq!(ctx.extents[0].flags, 0, "{ctx:?}");
    assert!(ctx.extents[0].length >= 65536, "{ctx:?}");
    let total: u64 = ctx.extents.iter().map(|e| e.length).sum();
    assert!(total > 0 && total <= MIB, "{ctx:?}");
    let hole = ctx
        .extents
        .iter()
        .find(|e| e.flags != 0)
        .expect("a hole after the data");
    assert_eq!(hole.flags, 3, "hole and zero: {ctx:?}");

    // REQ_ONE: one extent.
    let status = h.block_status_extents(MIB, 0, CmdFlag::REQ_ONE).unwrap();
    assert_eq!(status[0].extents.len(), 1, "{status:?}");
    h.shutdown(Shutdown::empty()).unwrap();
}
