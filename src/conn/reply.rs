//! Reading transmission replies: simple, structured and extended.

use std::io;

use super::{protocol_error, CommandId, Conn, Reading, MAX_ERROR_CHUNK, MAX_REQUEST_SIZE};
use crate::flags::raw::{LIBNBD_READ_DATA, LIBNBD_READ_ERROR, LIBNBD_READ_HOLE};
use crate::proto::{self, ReplyHeader};
use crate::{Error, Result};

impl Conn {
    /// Handles one step of reply reading; false if it needs more bytes.
    pub(super) fn read_reply(&mut self) -> Result<bool> {
        match self.reading {
            Reading::Header => self.read_reply_header(),
            Reading::Data {
                id,
                dst,
                left,
                len,
                done,
            } => self.read_data(id, dst, left, len, done),
            Reading::ChunkPayload {
                id,
                flags,
                kind,
                length,
            } => self.read_chunk_payload(id, flags, kind, length),
            Reading::Discard { id, left, done } => self.discard(id, left, done),
        }
    }

    fn read_reply_header(&mut self) -> Result<bool> {
        // Every reply header is at least a simple reply's 16 bytes; a public
        // call asks for those at once (it reads no further ahead).
        let first = if self.one_reply {
            self.min_reply_len()
        } else {
            4
        };
        if !self.fill(first)? {
            return Ok(false);
        }
        let magic = proto::reply_magic(&self.rbuf[self.rpos..self.rend]);
        // Only the headers negotiated are valid: extended ones alone, or
        // simple and structured ones (whose misuse the chunk checks catch).
        let expected = if self.negotiated.extended_headers {
            magic == proto::NBD_EXTENDED_REPLY_MAGIC
        } else {
            magic != proto::NBD_EXTENDED_REPLY_MAGIC
        };
        let hlen = match proto::reply_header_len(magic) {
            Some(hlen) if expected => hlen,
            _ => {
                return Err(protocol_error(format!(
                    "invalid or unexpected reply magic 0x{magic:x}"
                )))
            }
        };
        if !self.fill(hlen)? {
            return Ok(false);
        }
        let header = proto::decode_reply_header(&self.rbuf[self.rpos..self.rpos + hlen])
            .expect("length checked");
        self.consume(hlen);
        match header {
            ReplyHeader::Simple { error, cookie } => {
                let Some(id) = self.lookup(cookie) else {
                    // An error reply, or any simple reply once structured
                    // replies are on, has no payload: skip it (as libnbd
                    // does). Otherwise read data might follow, whose length
                    // only the command knows: the stream cannot be resynced.
                    if error != 0 || self.negotiated.structured_replies {
                        return Ok(true);
                    }
                    return Err(protocol_error(format!(
                        "no matching cookie {cookie} found for server reply, \
                         this is probably a server bug"
                    )));
                };
                let slot = &self.slots[id.index as usize];
                if slot.abandoned {
                    // Its caller is gone: read data, if any, goes nowhere.
                    let left = if error == 0 && slot.kind == proto::NBD_CMD_READ {
                        slot.count
                    } else {
                        0
                    };
                    self.reading = Reading::Discard {
                        id: Some(id),
                        left,
                        done: true,
                    };
                    return Ok(true);
                }
                if slot.kind == proto::NBD_CMD_READ && self.negotiated.structured_replies {
                    // Reads must be answered in chunks once structured
                    // replies are on; the data is still read, the read fails.
                    self.set_command_error(id, libc::EPROTO);
                }
                let slot = &mut self.slots[id.index as usize];
                if error == 0 && slot.kind == proto::NBD_CMD_READ {
                    slot.claim(0);
                    self.reading = Reading::Data {
                        id,
                        dst: slot.buf,
                        left: slot.count as usize,
                        len: slot.count as usize,
                        done: true,
                    };
                } else {
                    self.set_command_error(id, proto::errno_of_nbd_error(error));
                    self.complete(id);
                }
            }
            ReplyHeader::Chunk {
                flags,
                kind,
                cookie,
                offset,
                length,
            } => {
                // Beyond the largest read's data, no reply is plausible:
                // give up at once rather than read gigabytes (as libnbd).
                if length > MAX_REQUEST_SIZE + 8 {
                    return Err(protocol_error(format!(
                        "invalid server reply length {length}"
                    )));
                }
                self.start_chunk(flags, kind, cookie, offset, length)?;
            }
        }
        Ok(true)
    }

    fn start_chunk(
        &mut self,
        flags: u16,
        kind: u16,
        cookie: u64,
        offset: u64,
        length: u64,
    ) -> Result<()> {
        let done = flags & proto::NBD_REPLY_FLAG_DONE != 0;
        let id = self.lookup(cookie);
        let Some(id) = id else {
            // Framing is intact: skip the chunk, other commands go on.
            self.reading = Reading::Discard {
                id: None,
                left: length,
                done: false,
            };
            return Ok(());
        };
        if self.is_abandoned(id) {
            // Its caller is gone: skip the chunk, whatever it holds.
            self.reading = Reading::Discard {
                id: Some(id),
                left: length,
                done,
            };
            return Ok(());
        }
        let wrong_offset =
            self.negotiated.extended_headers && offset != self.slots[id.index as usize].offset;
        if !self.negotiated.structured_replies || wrong_offset {
            // The chunk frames itself, so it can be skipped; its command
            // fails (libnbd does the same). An extended chunk must name
            // its command's offset.
            self.set_command_error(id, libc::EPROTO);
            self.reading = Reading::Discard {
                id: Some(id),
                left: length,
                done,
            };
            return Ok(());
        }
        let (cmd_kind, cmd_offset, cmd_count, cmd_buf) = {
            let s = &self.slots[id.index as usize];
            (s.kind, s.offset, s.count, s.buf)
        };
        match kind {
            proto::NBD_REPLY_TYPE_NONE => {
                if length != 0 {
                    self.set_command_error(id, libc::EPROTO);
                    self.reading = Reading::Discard {
                        id: Some(id),
                        left: length,
                        done,
                    };
                } else if done {
                    self.complete(id);
                } else {
                    // NONE must end the reply.
                    self.set_command_error(id, libc::EPROTO);
                }
            }
            // Zero bytes of data are accepted (as libnbd does).
            proto::NBD_REPLY_TYPE_OFFSET_DATA if cmd_kind == proto::NBD_CMD_READ && length >= 8 => {
                if !self.fill(8)? {
                    // Come back when the offset has arrived.
                    self.reading = Reading::ChunkPayload {
                        id: Some(id),
                        flags,
                        kind,
                        length: length as usize,
                    };
                    return Ok(());
                }
                let offset = proto::decode_data_offset(&self.rbuf[self.rpos..self.rend]);
                self.consume(8);
                self.start_data(id, offset, length - 8, done, cmd_offset, cmd_count, cmd_buf)?;
            }
            proto::NBD_REPLY_TYPE_BLOCK_STATUS | proto::NBD_REPLY_TYPE_BLOCK_STATUS_EXT
                if cmd_kind == proto::NBD_CMD_BLOCK_STATUS
                    && !self.negotiated.meta_contexts.is_empty()
                    && super::block_status::plausible_length(kind, length) =>
            {
                self.reading = Reading::ChunkPayload {
                    id: Some(id),
                    flags,
                    kind,
                    length: length as usize,
                };
            }
            proto::NBD_REPLY_TYPE_OFFSET_HOLE if length == 12 => {
                self.reading = Reading::ChunkPayload {
                    id: Some(id),
                    flags,
                    kind,
                    length: length as usize,
                };
            }
            // Any error chunk long enough to hold an error number reports
            // it, even if the rest is malformed or of an unknown type
            // (libnbd favours the wire error over EPROTO the same way).
            k if k & proto::NBD_REPLY_TYPE_ERROR_BIT != 0 && length >= 4 => {
                self.reading = Reading::ChunkPayload {
                    id: Some(id),
                    flags,
                    kind,
                    length: length as usize,
                };
            }
            _ => {
                // Unknown, unexpected for this command, or malformed: the
                // command fails, the chunk is skipped.
                self.set_command_error(id, libc::EPROTO);
                self.reading = Reading::Discard {
                    id: Some(id),
                    left: length,
                    done,
                };
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn start_data(
        &mut self,
        id: CommandId,
        offset: u64,
        len: u64,
        done: bool,
        cmd_offset: u64,
        cmd_count: u64,
        cmd_buf: *mut u8,
    ) -> Result<()> {
        check_in_bounds(offset, len, cmd_offset, cmd_count)?;
        self.slots[id.index as usize].claim(offset - cmd_offset);
        // SAFETY: offset-cmd_offset+len <= cmd_count, the buffer's length.
        let dst = unsafe { cmd_buf.add((offset - cmd_offset) as usize) };
        self.reading = Reading::Data {
            id,
            dst,
            left: len as usize,
            len: len as usize,
            done,
        };
        Ok(())
    }

    /// Moves payload into the caller's buffer: first what `rbuf` already
    /// holds, then straight from the socket.
    fn read_data(
        &mut self,
        id: CommandId,
        dst: *mut u8,
        left: usize,
        len: usize,
        done: bool,
    ) -> Result<bool> {
        let mut dst = dst;
        let mut left = left;
        let take = left.min(self.buffered());
        if take > 0 {
            // SAFETY: dst has `left` writable bytes (checked at start_data or
            // the command's own count); rbuf holds `take` bytes at rpos.
            unsafe {
                std::ptr::copy_nonoverlapping(self.rbuf.as_ptr().add(self.rpos), dst, take);
                dst = dst.add(take);
            }
            self.consume(take);
            left -= take;
        }
        let mut progressed = take > 0;
        // The next reply's header (and a read chunk's offset) is received
        // with the end of this payload, into the empty `rbuf`; in a public
        // call, less than a whole reply.
        self.size_rbuf();
        let then = if self.one_reply {
            self.read_ahead()
        } else {
            self.header_hint()
        }
        .min(self.rbuf.len());
        while left > 0 {
            debug_assert_eq!(self.buffered(), 0);
            let t = self.transport.as_mut().expect("reading without transport");
            // SAFETY: as above, dst has `left` writable bytes.
            let out = unsafe { std::slice::from_raw_parts_mut(dst, left) };
            let got = if self.drained {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                t.recv_pair(out, &mut self.rbuf[..then])
            };
            match got {
                Ok(0) => return Err(self.eof()),
                Ok(got) => {
                    let payload = got.min(left);
                    // SAFETY: payload <= left.
                    dst = unsafe { dst.add(payload) };
                    left -= payload;
                    self.rpos = 0;
                    self.rend = got - payload;
                    self.stats.bytes_received += got as u64;
                    progressed = true;
                    // A short read has emptied the socket: wait for poll.
                    self.drained = got < out.len() + then && !t.pending();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    self.reading = Reading::Data {
                        id,
                        dst,
                        left,
                        len,
                        done,
                    };
                    return Ok(progressed);
                }
                Err(e) => return Err(self.peer_gone(Error::io("recv", &e))),
            }
        }
        self.reading = Reading::Header;
        self.recv_least = if len > super::RECV_CHUNK {
            self.header_hint()
        } else {
            super::RECV_CHUNK
        };
        // The whole chunk has arrived: count it and show it to the caller.
        // SAFETY: dst is one past the chunk's last byte, len bytes after its start.
        let start = unsafe { dst.sub(len) };
        let (cmd_offset, cmd_buf) = {
            let s = &mut self.slots[id.index as usize];
            s.data_seen = s.data_seen.saturating_add(len as u64);
            s.filled((start as usize - s.buf as usize) as u64, len as u64);
            (s.offset, s.buf)
        };
        let offset = cmd_offset + (start as usize - cmd_buf as usize) as u64;
        self.call_chunk(id, start, len, offset, LIBNBD_READ_DATA as u32);
        if done {
            self.complete(id);
        }
        Ok(true)
    }

    /// Bytes that start the reply most likely to come next: a read's data
    /// chunk header and offset, or a simple reply header.
    fn header_hint(&self) -> usize {
        if self.negotiated.extended_headers {
            proto::EXTENDED_REPLY_LEN + 8
        } else if self.negotiated.structured_replies {
            proto::STRUCTURED_REPLY_LEN + 8
        } else {
            proto::SIMPLE_REPLY_LEN
        }
    }

    fn read_chunk_payload(
        &mut self,
        id: Option<CommandId>,
        flags: u16,
        kind: u16,
        length: usize,
    ) -> Result<bool> {
        let done = flags & proto::NBD_REPLY_FLAG_DONE != 0;
        let id = id.expect("payload kept only for known commands");
        if kind == proto::NBD_REPLY_TYPE_BLOCK_STATUS
            || kind == proto::NBD_REPLY_TYPE_BLOCK_STATUS_EXT
        {
            if !self.fill(length)? {
                return Ok(false);
            }
            self.block_status_chunk(id, kind, length);
            self.consume(length);
            self.reading = Reading::Header;
            if done {
                self.complete(id);
            }
            return Ok(true);
        }
        if kind == proto::NBD_REPLY_TYPE_OFFSET_DATA {
            // The data offset had not arrived when the header did.
            if !self.fill(8)? {
                return Ok(false);
            }
            let offset = proto::decode_data_offset(&self.rbuf[self.rpos..self.rend]);
            self.consume(8);
            let s = &self.slots[id.index as usize];
            let (o, c, b) = (s.offset, s.count, s.buf);
            self.start_data(id, offset, length as u64 - 8, done, o, c, b)?;
            return Ok(true);
        }
        // Only an error chunk's first MAX_ERROR_CHUNK bytes can matter
        // (error, message, offset); any excess is skipped below.
        let want = length.min(MAX_ERROR_CHUNK as usize);
        if !self.fill(want)? {
            return Ok(false);
        }
        let payload = &self.rbuf[self.rpos..self.rpos + want];
        let (cmd_kind, cmd_offset, cmd_count, cmd_buf) = {
            let s = &self.slots[id.index as usize];
            (s.kind, s.offset, s.count, s.buf)
        };
        let decoded = if kind == proto::NBD_REPLY_TYPE_OFFSET_HOLE {
            proto::decode_hole_chunk(payload)
        } else {
            // A malformed error chunk still reports its error number.
            proto::decode_error_chunk(kind, payload).or_else(|| {
                Some(proto::ChunkPrefix::Error {
                    error: u32::from_be_bytes(payload[..4].try_into().ok()?),
                    message: Vec::new(),
                    offset: None,
                })
            })
        };
        self.consume(want);
        match decoded {
            Some(proto::ChunkPrefix::Hole {
                offset,
                length: hole,
            }) if cmd_kind == proto::NBD_CMD_READ => {
                check_in_bounds(offset, hole as u64, cmd_offset, cmd_count)?;
                let at = offset - cmd_offset;
                let s = &mut self.slots[id.index as usize];
                s.claim(at);
                // SAFETY: the hole lies within the command's buffer (checked).
                let start = unsafe { cmd_buf.add(at as usize) };
                // SAFETY: as above.
                unsafe { std::ptr::write_bytes(start, 0, hole as usize) };
                s.filled(at, hole as u64);
                s.data_seen = s.data_seen.saturating_add(hole as u64);
                self.call_chunk(id, start, hole as usize, offset, LIBNBD_READ_HOLE as u32);
            }
            Some(proto::ChunkPrefix::Error { error, offset, .. }) => {
                let errno = match proto::errno_of_nbd_error(error) {
                    0 => libc::EPROTO,
                    e => e,
                };
                // An error at a known offset of a read is shown to the
                // chunk callback, which may substitute its own errno.
                if let Some(off) = offset.filter(|&o| {
                    cmd_kind == proto::NBD_CMD_READ && o >= cmd_offset && o - cmd_offset < cmd_count
                }) {
                    let slot = &mut self.slots[id.index as usize];
                    if let Some(cb) = slot.chunk.as_mut().filter(|cb| cb.is_callable()) {
                        let mut scratch = errno;
                        // SAFETY: off is within the buffer (count 0 is passed).
                        let at = unsafe { cmd_buf.add((off - cmd_offset) as usize) };
                        // SAFETY: zero bytes are read at `at`.
                        if unsafe { cb.call(at, 0, off, LIBNBD_READ_ERROR as u32, &mut scratch) }
                            == -1
                            && slot.error == 0
                        {
                            slot.error = scratch;
                        }
                    }
                }
                self.set_command_error(id, errno);
            }
            _ => self.set_command_error(id, libc::EPROTO),
        }
        if want < length {
            self.reading = Reading::Discard {
                id: Some(id),
                left: (length - want) as u64,
                done,
            };
            return Ok(true);
        }
        self.reading = Reading::Header;
        if done {
            self.complete(id);
        }
        Ok(true)
    }

    fn discard(&mut self, id: Option<CommandId>, left: u64, done: bool) -> Result<bool> {
        let mut left = left;
        let mut progressed = false;
        loop {
            let take = (self.buffered() as u64).min(left) as usize;
            self.consume(take);
            left -= take as u64;
            progressed |= take > 0;
            if left == 0 {
                break;
            }
            self.size_rbuf();
            let want = (left as usize).min(self.rbuf.len());
            if !self.fill(want)? {
                self.reading = Reading::Discard { id, left, done };
                return Ok(progressed);
            }
        }
        self.reading = Reading::Header;
        if let (Some(id), true) = (id, done) {
            self.complete(id);
        }
        Ok(true)
    }
}

/// A read's data or hole chunk must lie inside the request; one that
/// does not kills the connection (as in libnbd: the server has lost
/// track of what it is answering). A zero-length one must start inside.
fn check_in_bounds(offset: u64, len: u64, cmd_offset: u64, cmd_count: u64) -> Result<()> {
    let inside = offset >= cmd_offset
        && offset - cmd_offset < cmd_count
        && len <= cmd_count - (offset - cmd_offset);
    if inside {
        return Ok(());
    }
    Err(protocol_error(format!(
        "range of structured reply is out of bounds, offset={offset}, \
         cmd->offset={cmd_offset}, length={len}, cmd->count={cmd_count}: \
         this is likely to be a bug in the NBD server"
    )))
}
