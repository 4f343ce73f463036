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
    pub(super) fn block_status_chunk(&mut self, id: CommandId, kind: u16, length: usize) {
        let payload = &self.rbuf[self.rpos..self.rpos + length];
        let context_id = be32(payload, 0);
        let Some(name) = self
            .negotiated
            .meta_contexts
            .iter()
            .find(|(cid, _)| *cid == context_id)
            .map(|(_, n)| n.clone())
        else {
            // A context we never agreed to.
            self.set_command_error(id, libc::EPROTO);
            return;
        };
        // Decode into reusable scratch space, in both widths as needed.
        self.extents64.clear();
        if kind == proto::NBD_REPLY_TYPE_BLOCK_STATUS {
            for d in payload[4..].chunks_exact(8) {
                self.extents64.push(Extent64 {
                    length: be32(d, 0) as u64,
                    flags: be32(d, 4) as u64,
                });
            }
        } else {
            let count = be32(payload, 4) as usize;
            if count != (length - 8) / 16 {
                self.set_command_error(id, libc::EPROTO);
                return;
            }
            for d in payload[8..].chunks_exact(16) {
                self.extents64.push(Extent64 {
                    length: be64(d, 0),
                    flags: be64(d, 8),
                });
            }
        }
        let slot = &mut self.slots[id.index as usize];
        let offset = slot.offset;
        let mut error = slot.error;
        let r = match slot.extent.as_mut() {
            Some(ExtentCallback::Wide(cb)) if cb.is_callable() => {
                cb.call(&name, offset, &mut self.extents64, &mut error)
            }
            Some(ExtentCallback::Narrow(cb)) if cb.is_callable() => {
                self.extents32.clear();
                for e in &self.extents64 {
                    // A 32-bit caller sees lengths clamped to what fits.
                    self.extents32.push(e.length.min(u32::MAX as u64) as u32);
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
