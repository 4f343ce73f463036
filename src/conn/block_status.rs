//! Block status replies: decoding extents and handing them to the
//! command's extent callback, in 32-bit or 64-bit form as it wants.

use std::ffi::{CStr, CString};

use super::{CommandId, Conn};
use crate::callback::{Extent, Extent64, Extent64Cb};
use crate::proto;

/// Largest block status payload accepted (libnbd's limit on a reply).
const MAX_BLOCK_STATUS_PAYLOAD: u64 = 64 * 1024 * 1024;

/// The extent callback a block status command carries.
pub(crate) enum ExtentCallback {
    /// `nbd_extent_callback`: (length, flags) as 32-bit pairs.
    Narrow(Extent),
    /// `nbd_extent64_callback`: 64-bit extents.
    Wide(Extent64Cb),
}

/// Whether a block status chunk's length fits its shape: a context id
/// (and, extended, a count) then whole descriptors, at least one.
pub(super) fn plausible_length(kind: u16, length: u64) -> bool {
    if length > MAX_BLOCK_STATUS_PAYLOAD {
        return false;
    }
    if kind == proto::NBD_REPLY_TYPE_BLOCK_STATUS {
        length >= 12 && (length - 4) % 8 == 0
    } else {
        length >= 24 && (length - 8) % 16 == 0
    }
}

impl Conn {
    /// Handles a whole block status chunk of `length` bytes at `rbuf[rpos..]`.
    ///
    /// As libnbd 1.22 does: a chunk of the type the headers in use do not
    /// call for fails the command (EPROTO) but is still shown; a context
    /// never agreed to is ignored. The extents shown stop at the first of
    /// a zero length (EPROTO if it is the first), a length past the end
    /// of the export (clamped, EPROTO), a length a 32-bit callback cannot
    /// hold (clamped to 4G-64M, no error) or flags it cannot hold
    /// (EOVERFLOW if it is the first).
    pub(super) fn block_status_chunk(&mut self, id: CommandId, kind: u16, length: usize) {
        let wide_chunk = kind == proto::NBD_REPLY_TYPE_BLOCK_STATUS_EXT;
        if wide_chunk != self.negotiated.extended_headers {
            self.set_command_error(id, libc::EPROTO);
        }
        let payload = &self.rbuf[self.rpos..self.rpos + length];
        if wide_chunk && proto::be32(payload, 4) as usize != (length - 8) / 16 {
            // The descriptor count does not match the length.
            self.set_command_error(id, libc::EPROTO);
            return;
        }
        let context_id = proto::be32(payload, 0);
        let Some(name) = self.meta_context_name(context_id) else {
            self.debug
                .log(|| format!("server sent unexpected meta context ID {context_id}"));
            return;
        };
        decode_extents(wide_chunk, payload, &mut self.extents64);
        let export_size = self.negotiated.export.size;
        let slot = &mut self.slots[id.index as usize];
        let narrow = matches!(slot.extent, Some(ExtentCallback::Narrow(_)));
        let cap = export_size.saturating_sub(slot.offset);
        let (shown, errno) = clamp_extents(&mut self.extents64, narrow, cap);
        self.extents64.truncate(shown);
        if slot.error == 0 {
            slot.error = errno;
        }
        self.call_extent(id, &name);
    }

    /// The name of the meta context the server agreed to as `context_id`.
    fn meta_context_name(&self, context_id: u32) -> Option<CString> {
        self.negotiated
            .meta_contexts
            .iter()
            .find(|(cid, _)| *cid == context_id)
            .map(|(_, n)| n.clone())
    }

    /// Shows the extents in `extents64` to the command's extent callback,
    /// converted at the last moment for a 32-bit one; a failure (-1) sets
    /// the command's error if it has none.
    fn call_extent(&mut self, id: CommandId, name: &CStr) {
        let slot = &mut self.slots[id.index as usize];
        let offset = slot.offset;
        let mut error = slot.error;
        let r = match slot.extent.as_mut() {
            Some(ExtentCallback::Wide(cb)) if cb.is_callable() => {
                cb.call(name, offset, &mut self.extents64, &mut error)
            }
            Some(ExtentCallback::Narrow(cb)) if cb.is_callable() => {
                self.extents32.clear();
                for e in &self.extents64 {
                    self.extents32.push(e.length as u32);
                    self.extents32.push(e.flags as u32);
                }
                cb.call(name, offset, &mut self.extents32, &mut error)
            }
            _ => 0,
        };
        if r == -1 && slot.error == 0 {
            slot.error = if error != 0 { error } else { libc::EPROTO };
        }
    }
}

/// Decodes a block status payload's descriptors (after the context id,
/// and for an extended chunk the count) into `out`, reused scratch space.
fn decode_extents(wide_chunk: bool, payload: &[u8], out: &mut Vec<Extent64>) {
    out.clear();
    if wide_chunk {
        out.extend(payload[8..].chunks_exact(16).map(|d| Extent64 {
            length: proto::be64(d, 0),
            flags: proto::be64(d, 8),
        }));
    } else {
        out.extend(payload[4..].chunks_exact(8).map(|d| Extent64 {
            length: proto::be32(d, 0) as u64,
            flags: proto::be32(d, 4) as u64,
        }));
    }
}

/// Clamps the extents a callback is shown (see
/// [`Conn::block_status_chunk`]); `cap` is what is left of the export
/// from the request's offset. Returns how many to show and the errno the
/// command gets (0 for none).
fn clamp_extents(extents: &mut [Extent64], narrow: bool, cap: u64) -> (usize, i32) {
    let mut errno = 0;
    let mut set = |e: i32| {
        if errno == 0 {
            errno = e;
        }
    };
    let mut total = 0u64;
    let mut shown = 0;
    for (i, e) in extents.iter_mut().enumerate() {
        let mut stop = false;
        if e.length > i64::MAX as u64 {
            stop = true;
            e.length = i64::MAX as u64 + 1 - super::MAX_REQUEST_SIZE;
        }
        if narrow && e.length > u32::MAX as u64 {
            stop = true;
            e.length = u32::MAX as u64 + 1 - super::MAX_REQUEST_SIZE;
        }
        if narrow && e.flags > u32::MAX as u64 {
            if i > 0 {
                break;
            }
            stop = true;
            set(libc::EOVERFLOW);
            e.flags &= u32::MAX as u64;
        }
        if e.length > cap - total {
            e.length = cap - total;
            stop = true;
            set(libc::EPROTO);
        }
        if e.length == 0 {
            if i > 0 {
                break;
            }
            stop = true;
            set(libc::EPROTO);
        }
        total += e.length;
        shown = i + 1;
        if stop {
            break;
        }
    }
    (shown, errno)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::testwire::Wire;
    use super::super::CommandCallbacks;
    use super::*;
    use crate::proto::*;

    fn e(length: u64, flags: u64) -> Extent64 {
        Extent64 { length, flags }
    }

    #[test]
    fn clamping() {
        let max = super::super::MAX_REQUEST_SIZE;
        /// Extents, narrow, cap; then how many are shown, the errno, and them.
        type Case = (Vec<Extent64>, bool, u64, usize, i32, Vec<Extent64>);
        let cases: Vec<Case> = vec![
            // All shown.
            (
                vec![e(512, 0), e(512, 3)],
                false,
                4096,
                2,
                0,
                vec![e(512, 0), e(512, 3)],
            ),
            // A zero length: EPROTO if first, else the list stops there.
            (
                vec![e(0, 1), e(8, 0)],
                false,
                4096,
                1,
                libc::EPROTO,
                vec![e(0, 1)],
            ),
            (vec![e(8, 1), e(0, 0)], false, 4096, 1, 0, vec![e(8, 1)]),
            // Past the end of the export: clamped, EPROTO.
            (
                vec![e(4000, 0), e(200, 1)],
                false,
                4096,
                2,
                libc::EPROTO,
                vec![e(4000, 0), e(96, 1)],
            ),
            // Flags a 32-bit callback cannot hold: EOVERFLOW if first.
            (
                vec![e(8, 1 << 32 | 5)],
                true,
                4096,
                1,
                libc::EOVERFLOW,
                vec![e(8, 5)],
            ),
            (
                vec![e(8, 1), e(8, 1 << 32)],
                true,
                4096,
                1,
                0,
                vec![e(8, 1)],
            ),
            // ... which a 64-bit one can.
            (vec![e(8, 1 << 32)], false, 4096, 1, 0, vec![e(8, 1 << 32)]),
            // A length a 32-bit callback cannot hold: clamped, no error.
            (
                vec![e(1 << 33, 0), e(8, 0)],
                true,
                u64::MAX,
                1,
                0,
                vec![e((1 << 32) - max, 0)],
            ),
            // Past i64::MAX: clamped for anyone.
            (
                vec![e(u64::MAX, 0)],
                false,
                u64::MAX,
                1,
                0,
                vec![e(i64::MAX as u64 + 1 - max, 0)],
            ),
        ];
        for (mut extents, narrow, cap, shown, errno, want) in cases {
            let before = extents.clone();
            let got = clamp_extents(&mut extents, narrow, cap);
            assert_eq!(got, (shown, errno), "{before:?}");
            assert_eq!(&extents[..shown], &want[..], "{before:?}");
        }
    }

    #[test]
    fn lengths() {
        assert!(plausible_length(NBD_REPLY_TYPE_BLOCK_STATUS, 12));
        assert!(plausible_length(NBD_REPLY_TYPE_BLOCK_STATUS, 20));
        assert!(!plausible_length(NBD_REPLY_TYPE_BLOCK_STATUS, 4));
        assert!(!plausible_length(NBD_REPLY_TYPE_BLOCK_STATUS, 16));
        assert!(plausible_length(NBD_REPLY_TYPE_BLOCK_STATUS_EXT, 24));
        assert!(!plausible_length(NBD_REPLY_TYPE_BLOCK_STATUS_EXT, 8));
        assert!(!plausible_length(NBD_REPLY_TYPE_BLOCK_STATUS_EXT, 32));
        assert!(!plausible_length(
            NBD_REPLY_TYPE_BLOCK_STATUS,
            MAX_BLOCK_STATUS_PAYLOAD + 4
        ));
    }

    type Seen = Arc<Mutex<Vec<(String, u64, Vec<u64>)>>>;

    /// A block status command for [offset, offset + 4096) whose callback
    /// (32- or 64-bit) records what it sees as flat numbers.
    fn issue(c: &mut Conn, offset: u64, narrow: bool) -> (CommandId, u64, Seen) {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let extent = if narrow {
            ExtentCallback::Narrow(Extent::new(move |name, off, entries, _| {
                let flat = entries.iter().map(|&x| x as u64).collect();
                s.lock().unwrap().push((name.to_string(), off, flat));
                0
            }))
        } else {
            ExtentCallback::Wide(Extent64Cb::new(move |name, off, entries, _| {
                let flat = entries.iter().flat_map(|x| [x.length, x.flags]).collect();
                s.lock().unwrap().push((name.to_string(), off, flat));
                0
            }))
        };
        let callbacks = CommandCallbacks {
            extent: Some(extent),
            ..CommandCallbacks::default()
        };
        let id = c
            .issue(
                NBD_CMD_BLOCK_STATUS,
                0,
                offset,
                4096,
                std::ptr::null_mut(),
                callbacks,
            )
            .unwrap();
        (id, id.wire_cookie(), seen)
    }

    fn ready(extended: bool) -> (Conn, Wire) {
        let (mut c, wire) = Conn::test_ready(true, extended);
        c.negotiated.meta_contexts = vec![(9, CString::new("base:allocation").unwrap())];
        (c, wire)
    }

    fn chunk(flags: u16, kind: u16, cookie: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = encode_chunk_header(flags, kind, cookie, payload.len() as u32).to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn extents_reach_either_callback() {
        for narrow in [true, false] {
            let (mut c, wire) = ready(false);
            let (id, cookie, seen) = issue(&mut c, 512, narrow);
            let p = encode_block_status(9, &[(1024, 0), (2048, 3)]);
            wire.push(&chunk(
                NBD_REPLY_FLAG_DONE,
                NBD_REPLY_TYPE_BLOCK_STATUS,
                cookie,
                &p,
            ));
            c.progress().unwrap();
            assert_eq!(c.command_result(id), Some(0));
            assert_eq!(
                *seen.lock().unwrap(),
                vec![("base:allocation".to_string(), 512, vec![1024, 0, 2048, 3])]
            );
        }
    }

    #[test]
    fn extended_chunks() {
        let (mut c, wire) = ready(true);
        let (id, cookie, seen) = issue(&mut c, 0, false);
        let p = encode_block_status_ext(9, &[(1 << 12, 1 << 40)]);
        let r = super::super::testwire::extended_chunk(
            NBD_REPLY_FLAG_DONE,
            NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
            cookie,
            0,
            &p,
        );
        wire.push(&r);
        c.progress().unwrap();
        assert_eq!(c.command_result(id), Some(0));
        assert_eq!(seen.lock().unwrap()[0].2, vec![4096, 1 << 40]);

        // A descriptor count that does not match the length: EPROTO, not shown.
        let (mut c, wire) = ready(true);
        let (id, cookie, seen) = issue(&mut c, 0, false);
        let mut p = encode_block_status_ext(9, &[(512, 0)]);
        p[7] = 2;
        let r = super::super::testwire::extended_chunk(
            NBD_REPLY_FLAG_DONE,
            NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
            cookie,
            0,
            &p,
        );
        wire.push(&r);
        c.progress().unwrap();
        assert_eq!(c.command_result(id), Some(libc::EPROTO));
        assert!(seen.lock().unwrap().is_empty());
    }

    #[test]
    fn wrong_chunk_type_or_unknown_context() {
        // A 64-bit chunk without extended headers: shown, but EPROTO.
        let (mut c, wire) = ready(false);
        let (id, cookie, seen) = issue(&mut c, 0, true);
        let p = encode_block_status_ext(9, &[(512, 1)]);
        wire.push(&chunk(
            NBD_REPLY_FLAG_DONE,
            NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
            cookie,
            &p,
        ));
        c.progress().unwrap();
        assert_eq!(c.command_result(id), Some(libc::EPROTO));
        assert_eq!(seen.lock().unwrap()[0].2, vec![512, 1]);

        // A context never agreed: ignored.
        let (mut c, wire) = ready(false);
        let (id, cookie, seen) = issue(&mut c, 0, true);
        let p = encode_block_status(4, &[(512, 1)]);
        wire.push(&chunk(
            NBD_REPLY_FLAG_DONE,
            NBD_REPLY_TYPE_BLOCK_STATUS,
            cookie,
            &p,
        ));
        c.progress().unwrap();
        assert_eq!(c.command_result(id), Some(0));
        assert!(seen.lock().unwrap().is_empty());
    }
}
