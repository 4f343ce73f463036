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
