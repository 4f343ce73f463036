//! Block status replies: decoding extents and handing them to the
//! command's extent callback, in 32-bit or 64-bit form as it wants.

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

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
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
        if wide_chunk && be32(payload, 4) as usize != (length - 8) / 16 {
            // The descriptor count does not match the length.
            self.set_command_error(id, libc::EPROTO);
            return;
        }
        let context_id = be32(payload, 0);
        let Some(name) = self
            .negotiated
            .meta_contexts
            .iter()
            .find(|(cid, _)| *cid == context_id)
            .map(|(_, n)| n.clone())
        else {
            self.debug
                .log(|| format!("server sent unexpected meta context ID {context_id}"));
            return;
        };
        // Decode into reusable scratch space.
        self.extents64.clear();
        if wide_chunk {
            for d in payload[8..].chunks_exact(16) {
                self.extents64.push(Extent64 {
                    length: be64(d, 0),
                    flags: be64(d, 8),
                });
            }
        } else {
            for d in payload[4..].chunks_exact(8) {
                self.extents64.push(Extent64 {
                    length: be32(d, 0) as u64,
                    flags: be32(d, 4) as u64,
                });
            }
        }
        let export_size = self.negotiated.export.size;
        let slot = &mut self.slots[id.index as usize];
        let narrow = matches!(slot.extent, Some(ExtentCallback::Narrow(_)));
        let offset = slot.offset;
        let cap = export_size.saturating_sub(offset);
        let mut total = 0u64;
        let mut shown = 0;
        for (i, e) in self.extents64.iter_mut().enumerate() {
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
                if slot.error == 0 {
                    slot.error = libc::EOVERFLOW;
                }
                e.flags &= u32::MAX as u64;
            }
            if e.length > cap - total {
                e.length = cap - total;
                stop = true;
                if slot.error == 0 {
                    slot.error = libc::EPROTO;
                }
            }
            if e.length == 0 {
                if i > 0 {
                    break;
                }
                stop = true;
                if slot.error == 0 {
                    slot.error = libc::EPROTO;
                }
            }
            total += e.length;
            shown = i + 1;
            if stop {
                break;
            }
        }
        self.extents64.truncate(shown);
        let mut error = slot.error;
        let r = match slot.extent.as_mut() {
            Some(ExtentCallback::Wide(cb)) if cb.is_callable() => {
                cb.call(&name, offset, &mut self.extents64, &mut error)
            }
            Some(ExtentCallback::Narrow(cb)) if cb.is_callable() => {
                self.extents32.clear();
                for e in &self.extents64 {
                    self.extents32.push(e.length as u32);
                    self.extents32.push(e.flags as u32);
                }
                cb.call(&name, offset, &mut self.extents32, &mut error)
            }
            _ => 0,
        };
        if r == -1 && slot.error == 0 {
            slot.error = if error != 0 { error } else { libc::EPROTO };
        }
    }
}
