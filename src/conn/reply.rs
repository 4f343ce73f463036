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
                at,
                left,
                len,
                done,
            } => self.read_data(id, at, left, len, done),
            Reading::ChunkPayload {
                id,
                flags,
                kind,
                length,
            } => self.read_chunk_payload(id, flags, kind, length),
            Reading::Discard { id, left, done } => self.discard(id, left, done),
        }
    }

    /// A reply header: its magic says which kind (only the kinds the
    /// negotiation allows are valid), and so how long it is.
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
        let hlen = self.reply_header_len(magic)?;
        if !self.fill(hlen)? {
            return Ok(false);
        }
        let header = proto::decode_reply_header(&self.rbuf[self.rpos..self.rpos + hlen])
            .expect("length checked");
        self.consume(hlen);
        match header {
            ReplyHeader::Simple { error, cookie } => self.start_simple_reply(error, cookie)?,
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

    /// The header length for a reply magic, if the negotiated headers
    /// allow that magic: extended ones alone, or simple and structured
    /// ones (whose misuse the chunk checks catch).
    fn reply_header_len(&self, magic: u32) -> Result<usize> {
        let expected = if self.negotiated.extended_headers {
            magic == proto::NBD_EXTENDED_REPLY_MAGIC
        } else {
            magic != proto::NBD_EXTENDED_REPLY_MAGIC
        };
        match proto::reply_header_len(magic) {
            Some(hlen) if expected => Ok(hlen),
            _ => Err(protocol_error(format!(
                "invalid or unexpected reply magic 0x{magic:x}"
            ))),
        }
    }

    /// A simple reply: the command's error, or for a successful read its
    /// data, which follows at once (its length is the command's count).
    fn start_simple_reply(&mut self, error: u32, cookie: u64) -> Result<()> {
        let Some(id) = self.lookup(cookie) else {
            // An error reply, or any simple reply once structured
            // replies are on, has no payload: skip it (as libnbd
            // does). Otherwise read data might follow, whose length
            // only the command knows: the stream cannot be resynced.
            if error != 0 || self.negotiated.structured_replies {
                return Ok(());
            }
            return Err(protocol_error(format!(
                "no matching cookie {cookie} found for server reply, \
                 this is probably a server bug"
            )));
        };
        let slot = &self.slots[id.index as usize];
        let is_read = slot.kind == proto::NBD_CMD_READ;
        if slot.abandoned {
            // Its caller is gone: read data, if any, goes nowhere.
            let left = if error == 0 && is_read { slot.count } else { 0 };
            self.skip_chunk(Some(id), left, true);
            return Ok(());
        }
        if is_read && self.negotiated.structured_replies {
            // Reads must be answered in chunks once structured
            // replies are on; the data is still read, the read fails.
            self.set_command_error(id, libc::EPROTO);
        }
        if error == 0 && is_read {
            let slot = &mut self.slots[id.index as usize];
            slot.claim(0);
            self.reading = Reading::Data {
                id,
                at: 0,
                left: slot.count as usize,
                len: slot.count as usize,
                done: true,
            };
        } else {
            self.set_command_error(id, proto::errno_of_nbd_error(error));
            self.complete(id);
        }
        Ok(())
    }

    /// A structured or extended chunk header: finds its command and
    /// decides what to do with the payload, which must fit the command.
    fn start_chunk(
        &mut self,
        flags: u16,
        kind: u16,
        cookie: u64,
        offset: u64,
        length: u64,
    ) -> Result<()> {
        let done = flags & proto::NBD_REPLY_FLAG_DONE != 0;
        let Some(id) = self.lookup(cookie) else {
            // Framing is intact: skip the chunk, other commands go on.
            self.skip_chunk(None, length, false);
            return Ok(());
        };
        if self.is_abandoned(id) {
            // Its caller is gone: skip the chunk, whatever it holds.
            self.skip_chunk(Some(id), length, done);
            return Ok(());
        }
        let slot = &self.slots[id.index as usize];
        let wrong_offset = self.negotiated.extended_headers && offset != slot.offset;
        let plan = if !self.negotiated.structured_replies || wrong_offset {
            // The chunk frames itself, so it can be skipped; its command
            // fails (libnbd does the same). An extended chunk must name
            // its command's offset.
            ChunkPlan::Reject
        } else {
            plan_chunk(
                kind,
                length,
                slot.kind,
                !self.negotiated.meta_contexts.is_empty(),
            )
        };
        match plan {
            ChunkPlan::End if done => self.complete(id),
            // NONE must end the reply.
            ChunkPlan::End => self.set_command_error(id, libc::EPROTO),
            ChunkPlan::Data => {
                self.read_data_offset(id, flags, kind, length as usize)?;
            }
            ChunkPlan::Payload => {
                self.reading = Reading::ChunkPayload {
                    id: Some(id),
                    flags,
                    kind,
                    length: length as usize,
                };
            }
            ChunkPlan::Reject => {
                // Unknown, unexpected for this command, or malformed: the
                // command fails, the chunk is skipped.
                self.set_command_error(id, libc::EPROTO);
                self.skip_chunk(Some(id), length, done);
            }
        }
        Ok(())
    }

    /// Throws away the next `length` bytes, then ends the reply of `id`
    /// if `done`.
    fn skip_chunk(&mut self, id: Option<CommandId>, length: u64, done: bool) {
        self.reading = Reading::Discard {
            id,
            left: length,
            done,
        };
    }

    /// The 8-byte offset that starts an `OFFSET_DATA` payload; then the
    /// data, straight into the caller's buffer. Waits in `ChunkPayload`
    /// if the offset has not arrived.
    fn read_data_offset(
        &mut self,
        id: CommandId,
        flags: u16,
        kind: u16,
        length: usize,
    ) -> Result<bool> {
        if !self.fill(8)? {
            // Come back when the offset has arrived.
            self.reading = Reading::ChunkPayload {
                id: Some(id),
                flags,
                kind,
                length,
            };
            return Ok(false);
        }
        let offset = proto::decode_data_offset(&self.rbuf[self.rpos..self.rend]);
        self.consume(8);
        let done = flags & proto::NBD_REPLY_FLAG_DONE != 0;
        self.start_data(id, offset, length as u64 - 8, done)?;
        Ok(true)
    }

    /// Read data for export offset `offset`, `len` bytes, which must lie
    /// inside the read's range: it goes straight into the caller's buffer.
    fn start_data(&mut self, id: CommandId, offset: u64, len: u64, done: bool) -> Result<()> {
        let slot = &mut self.slots[id.index as usize];
        check_in_bounds(offset, len, slot.offset, slot.count)?;
        let at = offset - slot.offset;
        slot.claim(at);
        self.reading = Reading::Data {
            id,
            at: at as usize,
            left: len as usize,
            len: len as usize,
            done,
        };
        Ok(())
    }

    /// Moves payload into the caller's buffer at `at`: first what `rbuf`
    /// already holds, then straight from the socket.
    fn read_data(
        &mut self,
        id: CommandId,
        at: usize,
        left: usize,
        len: usize,
        done: bool,
    ) -> Result<bool> {
        let take = left.min(self.buffered());
        if take > 0 {
            let src = &self.rbuf[self.rpos..self.rpos + take];
            self.slots[id.index as usize].buf.write_at(at, src);
            self.consume(take);
        }
        let (mut at, mut left) = (at + take, left - take);
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
            match self.recv_data(id, at, left, then) {
                Ok(0) => return Err(self.eof()),
                Ok(payload) => {
                    at += payload;
                    left -= payload;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    self.reading = Reading::Data {
                        id,
                        at,
                        left,
                        len,
                        done,
                    };
                    return Ok(progressed);
                }
                Err(e) => return Err(self.peer_gone(Error::io("recv", &e))),
            }
        }
        self.data_chunk_done(id, at - len, len, done);
        Ok(true)
    }

    /// One receive into `left` bytes at `at` of the caller's buffer and,
    /// past them, up to `then` bytes of what follows into the empty
    /// `rbuf`. Returns the bytes that landed in the caller's buffer (0 at
    /// end of file).
    fn recv_data(
        &mut self,
        id: CommandId,
        at: usize,
        left: usize,
        then: usize,
    ) -> io::Result<usize> {
        debug_assert_eq!(self.buffered(), 0);
        if self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let t = self.transport.as_mut().expect("reading without transport");
        let out = self.slots[id.index as usize].buf.slice_mut(at, left);
        let got = t.recv_pair(out, &mut self.rbuf[..then])?;
        if got == 0 {
            return Ok(0);
        }
        let payload = got.min(left);
        self.rpos = 0;
        self.rend = got - payload;
        self.stats.bytes_received += got as u64;
        // A short read has emptied the socket: wait for poll.
        self.drained = got < left + then && !t.pending();
        Ok(payload)
    }

    /// The whole data chunk (`len` bytes at `start` of the caller's
    /// buffer) has arrived: count it and show it to the chunk callback.
    fn data_chunk_done(&mut self, id: CommandId, start: usize, len: usize, done: bool) {
        self.reading = Reading::Header;
        self.recv_least = if len > super::RECV_CHUNK {
            self.header_hint()
        } else {
            super::RECV_CHUNK
        };
        let s = &mut self.slots[id.index as usize];
        s.data_seen = s.data_seen.saturating_add(len as u64);
        s.filled(start as u64, len as u64);
        let offset = s.offset + start as u64;
        self.call_chunk(id, start, len, offset, LIBNBD_READ_DATA as u32);
        if done {
            self.complete(id);
        }
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

    /// A whole non-data chunk payload (a block status, a hole or an
    /// error), or the offset of a data chunk that had not arrived.
    fn read_chunk_payload(
        &mut self,
        id: Option<CommandId>,
        flags: u16,
        kind: u16,
        length: usize,
    ) -> Result<bool> {
        let done = flags & proto::NBD_REPLY_FLAG_DONE != 0;
        let id = id.expect("payload kept only for known commands");
        match kind {
            proto::NBD_REPLY_TYPE_BLOCK_STATUS | proto::NBD_REPLY_TYPE_BLOCK_STATUS_EXT => {
                if !self.fill(length)? {
                    return Ok(false);
                }
                self.block_status_chunk(id, kind, length);
                self.consume(length);
                self.end_chunk(id, done);
                Ok(true)
            }
            // The data offset had not arrived when the header did.
            proto::NBD_REPLY_TYPE_OFFSET_DATA => self.read_data_offset(id, flags, kind, length),
            _ => self.read_hole_or_error(id, kind, length, done),
        }
    }

    /// An `OFFSET_HOLE` or error chunk: decoded from its first bytes
    /// (any excess of an error chunk is skipped).
    fn read_hole_or_error(
        &mut self,
        id: CommandId,
        kind: u16,
        length: usize,
        done: bool,
    ) -> Result<bool> {
        // Only an error chunk's first MAX_ERROR_CHUNK bytes can matter
        // (error, message, offset); any excess is skipped below.
        let want = length.min(MAX_ERROR_CHUNK as usize);
        if !self.fill(want)? {
            return Ok(false);
        }
        let decoded = decode_hole_or_error(kind, &self.rbuf[self.rpos..self.rpos + want]);
        self.consume(want);
        let is_read = self.slots[id.index as usize].kind == proto::NBD_CMD_READ;
        match decoded {
            Some(proto::ChunkPrefix::Hole {
                offset,
                length: hole,
            }) if is_read => self.hole_chunk(id, offset, hole)?,
            Some(proto::ChunkPrefix::Error { error, offset, .. }) => {
                self.error_chunk(id, error, offset)
            }
            _ => self.set_command_error(id, libc::EPROTO),
        }
        if want < length {
            self.skip_chunk(Some(id), (length - want) as u64, done);
            return Ok(true);
        }
        self.end_chunk(id, done);
        Ok(true)
    }

    /// A whole chunk has been handled: the next header follows, and the
    /// reply is over if the chunk said so.
    fn end_chunk(&mut self, id: CommandId, done: bool) {
        self.reading = Reading::Header;
        if done {
            self.complete(id);
        }
    }

    /// `hole` bytes of zeros at export offset `offset` of a read.
    fn hole_chunk(&mut self, id: CommandId, offset: u64, hole: u32) -> Result<()> {
        let s = &mut self.slots[id.index as usize];
        check_in_bounds(offset, hole as u64, s.offset, s.count)?;
        let at = offset - s.offset;
        s.claim(at);
        s.buf.zero_range(at as usize, hole as usize);
        s.filled(at, hole as u64);
        s.data_seen = s.data_seen.saturating_add(hole as u64);
        self.call_chunk(
            id,
            at as usize,
            hole as usize,
            offset,
            LIBNBD_READ_HOLE as u32,
        );
        Ok(())
    }

    /// An error chunk: the command fails with the error (EPROTO for a
    /// zero error); an error at an offset inside a read is first shown
    /// to the chunk callback, which may substitute its own errno.
    fn error_chunk(&mut self, id: CommandId, error: u32, offset: Option<u64>) {
        let errno = match proto::errno_of_nbd_error(error) {
            0 => libc::EPROTO,
            e => e,
        };
        let slot = &mut self.slots[id.index as usize];
        let (cmd_kind, cmd_offset, cmd_count) = (slot.kind, slot.offset, slot.count);
        if let Some(off) = offset.filter(|&o| {
            cmd_kind == proto::NBD_CMD_READ && o >= cmd_offset && o - cmd_offset < cmd_count
        }) {
            if let Some(cb) = slot.chunk.as_mut().filter(|cb| cb.is_callable()) {
                let mut scratch = errno;
                let at = (off - cmd_offset) as usize;
                let status = LIBNBD_READ_ERROR as u32;
                if slot.buf.show_chunk(cb, at, 0, off, status, &mut scratch) == -1
                    && slot.error == 0
                {
                    slot.error = scratch;
                }
            }
        }
        self.set_command_error(id, errno);
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

/// What a chunk's payload is to the command it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkPlan {
    /// `NBD_REPLY_TYPE_NONE` without payload: the reply ends (it must).
    End,
    /// Read data: an offset, then the data into the caller's buffer.
    Data,
    /// A block status, hole or error payload, read whole then decoded.
    Payload,
    /// Unknown, unexpected for this command, or malformed: the command
    /// fails (EPROTO), the chunk is skipped.
    Reject,
}

/// Decides from a chunk's type and length, and the command's kind,
/// whether its payload can be used (see [`ChunkPlan`]).
fn plan_chunk(kind: u16, length: u64, cmd_kind: u16, have_contexts: bool) -> ChunkPlan {
    match kind {
        proto::NBD_REPLY_TYPE_NONE if length == 0 => ChunkPlan::End,
        // Zero bytes of data are accepted (as libnbd does).
        proto::NBD_REPLY_TYPE_OFFSET_DATA if cmd_kind == proto::NBD_CMD_READ && length >= 8 => {
            ChunkPlan::Data
        }
        proto::NBD_REPLY_TYPE_BLOCK_STATUS | proto::NBD_REPLY_TYPE_BLOCK_STATUS_EXT
            if cmd_kind == proto::NBD_CMD_BLOCK_STATUS
                && have_contexts
                && super::block_status::plausible_length(kind, length) =>
        {
            ChunkPlan::Payload
        }
        proto::NBD_REPLY_TYPE_OFFSET_HOLE if length == 12 => ChunkPlan::Payload,
        // Any error chunk long enough to hold an error number reports
        // it, even if the rest is malformed or of an unknown type
        // (libnbd favours the wire error over EPROTO the same way).
        k if k & proto::NBD_REPLY_TYPE_ERROR_BIT != 0 && length >= 4 => ChunkPlan::Payload,
        _ => ChunkPlan::Reject,
    }
}

/// Decodes a hole or error chunk's payload; a malformed error chunk
/// still reports its error number (`None` only for a bad hole, or an
/// error chunk shorter than 4 bytes).
fn decode_hole_or_error(kind: u16, payload: &[u8]) -> Option<proto::ChunkPrefix> {
    if kind == proto::NBD_REPLY_TYPE_OFFSET_HOLE {
        return proto::decode_hole_chunk(payload);
    }
    proto::decode_error_chunk(kind, payload).or_else(|| {
        (payload.len() >= 4).then(|| proto::ChunkPrefix::Error {
            error: proto::be32(payload, 0),
            message: Vec::new(),
            offset: None,
        })
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::testwire::Wire;
    use super::super::CommandCallbacks;
    use super::*;
    use crate::callback::Chunk;
    use crate::proto::*;

    const DONE: u16 = NBD_REPLY_FLAG_DONE;

    /// A structured chunk: header then payload.
    fn chunk(flags: u16, kind: u16, cookie: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = encode_chunk_header(flags, kind, cookie, payload.len() as u32).to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn data_chunk(flags: u16, cookie: u64, offset: u64, data: &[u8]) -> Vec<u8> {
        let mut p = offset.to_be_bytes().to_vec();
        p.extend_from_slice(data);
        chunk(flags, NBD_REPLY_TYPE_OFFSET_DATA, cookie, &p)
    }

    /// Feeds `bytes` and runs the machine; the error that killed it, if any.
    fn feed(c: &mut Conn, wire: &Wire, bytes: &[u8]) -> Option<Error> {
        wire.push(bytes);
        c.progress().err()
    }

    fn assert_fatal(err: Option<Error>, message: &str) {
        let err = err.expect("the connection should die");
        assert_eq!(err.errno(), libc::EPROTO);
        assert_eq!(err.message(), message);
    }

    /// A chunk callback that records (data, offset, status).
    #[allow(clippy::type_complexity)]
    fn recorder() -> (CommandCallbacks, Arc<Mutex<Vec<(Vec<u8>, u64, u32)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let chunk = Chunk::new(move |data, offset, status, _err| {
            s.lock().unwrap().push((data.to_vec(), offset, status));
            0
        });
        let cbs = CommandCallbacks {
            chunk: Some(chunk),
            ..CommandCallbacks::default()
        };
        (cbs, seen)
    }

    #[test]
    fn simple_reply_data_lands_in_the_buffer() {
        let (mut c, wire) = Conn::test_ready(false, false);
        let mut buf = [0xffu8; 8];
        let (id, cookie) = c.test_read(0, &mut buf, CommandCallbacks::default());
        let mut r = encode_simple_reply(NBD_SUCCESS, cookie).to_vec();
        r.extend_from_slice(b"abcdefgh");
        // Delivered in two parts: the second lands straight in the buffer.
        assert!(feed(&mut c, &wire, &r[..19]).is_none());
        assert_eq!(c.command_result(id), None);
        assert!(feed(&mut c, &wire, &r[19..]).is_none());
        assert_eq!(c.command_result(id), Some(0));
        assert_eq!(&buf, b"abcdefgh");
    }

    #[test]
    fn simple_reply_error_maps_errno() {
        let (mut c, wire) = Conn::test_ready(false, false);
        let mut buf = [0u8; 8];
        let (id, cookie) = c.test_read(0, &mut buf, CommandCallbacks::default());
        assert!(feed(&mut c, &wire, &encode_simple_reply(NBD_ENOSPC, cookie)).is_none());
        assert_eq!(c.command_result(id), Some(libc::ENOSPC));
        assert!(!c.is_dead());
    }

    #[test]
    fn simple_reply_to_a_read_with_structured_replies_is_eproto() {
        let (mut c, wire) = Conn::test_ready(true, false);
        let mut buf = [0u8; 4];
        let (id, cookie) = c.test_read(0, &mut buf, CommandCallbacks::default());
        let mut r = encode_simple_reply(NBD_SUCCESS, cookie).to_vec();
        r.extend_from_slice(b"wxyz");
        assert!(feed(&mut c, &wire, &r).is_none());
        // The data is still read (the stream stays in step); the read fails.
        assert_eq!(c.command_result(id), Some(libc::EPROTO));
        assert_eq!(wire.unread(), 0);
    }

    #[test]
    fn bad_magic_kills_the_connection() {
        let (mut c, wire) = Conn::test_ready(false, false);
        let mut buf = [0u8; 4];
        let (id, _) = c.test_read(0, &mut buf, CommandCallbacks::default());
        let err = feed(&mut c, &wire, &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);
        assert_fatal(err, "invalid or unexpected reply magic 0xdeadbeef");
        assert!(c.is_dead());
        assert_eq!(c.command_result(id), Some(libc::ENOTCONN));
    }

    #[test]
    fn extended_magic_needs_extended_headers() {
        let (mut c, wire) = Conn::test_ready(true, false);
        let h = encode_extended_chunk_header(DONE, NBD_REPLY_TYPE_NONE, 1, 0, 0);
        assert_fatal(
            feed(&mut c, &wire, &h),
            "invalid or unexpected reply magic 0x6e8a278c",
        );
        // And the other way round.
        let (mut c, wire) = Conn::test_ready(true, true);
        let h = encode_chunk_header(DONE, NBD_REPLY_TYPE_NONE, 1, 0);
        assert_fatal(
            feed(&mut c, &wire, &h),
            "invalid or unexpected reply magic 0x668e33ef",
        );
    }

    #[test]
    fn chunk_length_over_the_limit_is_fatal() {
        let (mut c, wire) = Conn::test_ready(true, true);
        let length = MAX_REQUEST_SIZE + 9;
        let h = encode_extended_chunk_header(DONE, NBD_REPLY_TYPE_OFFSET_DATA, 1, 0, length);
        assert_fatal(
            feed(&mut c, &wire, &h),
            &format!("invalid server reply length {length}"),
        );
    }

    #[test]
    fn unknown_cookie() {
        // Simple replies without structured replies: fatal (unless an error).
        let (mut c, wire) = Conn::test_ready(false, false);
        assert!(feed(&mut c, &wire, &encode_simple_reply(NBD_EIO, 99)).is_none());
        assert_fatal(
            feed(&mut c, &wire, &encode_simple_reply(0, 99)),
            "no matching cookie 99 found for server reply, this is probably a server bug",
        );
        // A chunk for no command is skipped whole; others go on.
        let (mut c, wire) = Conn::test_ready(true, false);
        let mut buf = [0u8; 2];
        let (id, cookie) = c.test_read(0, &mut buf, CommandCallbacks::default());
        let mut r = data_chunk(DONE, 12345, 0, b"zz");
        r.extend(data_chunk(DONE, cookie, 0, b"ok"));
        assert!(feed(&mut c, &wire, &r).is_none());
        assert_eq!(c.command_result(id), Some(0));
        assert_eq!(&buf, b"ok");
    }

    #[test]
    fn structured_read_in_chunks_and_done_flag() {
        let (mut c, wire) = Conn::test_ready(true, false);
        let mut buf = [0xffu8; 8];
        let (cbs, seen) = recorder();
        let (id, cookie) = c.test_read(4096, &mut buf, cbs);
        // Out of order, with a hole; not done until NONE says so.
        assert!(feed(&mut c, &wire, &data_chunk(0, cookie, 4100, b"5678")).is_none());
        let hole = encode_hole_chunk(4096, 2);
        assert!(feed(
            &mut c,
            &wire,
            &chunk(0, NBD_REPLY_TYPE_OFFSET_HOLE, cookie, &hole)
        )
        .is_none());
        assert!(feed(&mut c, &wire, &data_chunk(0, cookie, 4098, b"34")).is_none());
        assert_eq!(c.command_result(id), None);
        assert!(feed(
            &mut c,
            &wire,
            &chunk(DONE, NBD_REPLY_TYPE_NONE, cookie, &[])
        )
        .is_none());
        assert_eq!(c.command_result(id), Some(0));
        assert_eq!(&buf, b"\0\x00345678");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (b"5678".to_vec(), 4100, LIBNBD_READ_DATA as u32),
                (vec![0, 0], 4096, LIBNBD_READ_HOLE as u32),
                (b"34".to_vec(), 4098, LIBNBD_READ_DATA as u32),
            ]
        );
    }

    #[test]
    fn data_not_covering_the_range_is_eproto() {
        let (mut c, wire) = Conn::test_ready(true, false);
        let mut buf = [0u8; 4];
        let (id, cookie) = c.test_read(0, &mut buf, CommandCallbacks::default());
        assert!(feed(&mut c, &wire, &data_chunk(DONE, cookie, 0, b"ab")).is_none());
        assert_eq!(c.command_result(id), Some(libc::EPROTO));
    }

    #[test]
    fn out_of_range_offsets_are_fatal() {
        for (offset, len) in [(100u64, 1usize), (4090, 8), (4096 + 8, 0), (u64::MAX, 1)] {
            let (mut c, wire) = Conn::test_ready(true, false);
            let mut buf = [0u8; 8];
            let (_, cookie) = c.test_read(4096, &mut buf, CommandCallbacks::default());
            assert_fatal(
                feed(
                    &mut c,
                    &wire,
                    &data_chunk(DONE, cookie, offset, &vec![1; len]),
                ),
                &format!(
                    "range of structured reply is out of bounds, offset={offset}, \
                     cmd->offset=4096, length={len}, cmd->count=8: \
                     this is likely to be a bug in the NBD server"
                ),
            );
        }
        // A hole too.
        let (mut c, wire) = Conn::test_ready(true, false);
        let mut buf = [0u8; 8];
        let (_, cookie) = c.test_read(0, &mut buf, CommandCallbacks::default());
        let hole = encode_hole_chunk(4, 5);
        assert_fatal(
            feed(
                &mut c,
                &wire,
                &chunk(DONE, NBD_REPLY_TYPE_OFFSET_HOLE, cookie, &hole),
            ),
            "range of structured reply is out of bounds, offset=4, \
             cmd->offset=0, length=5, cmd->count=8: \
             this is likely to be a bug in the NBD server",
        );
    }

    #[test]
    fn error_chunks() {
        let (mut c, wire) = Conn::test_ready(true, false);
        let mut buf = [0u8; 8];
        let (cbs, seen) = recorder();
        let (id, cookie) = c.test_read(0, &mut buf, cbs);
        let e = encode_error_chunk(NBD_EPERM, b"no", Some(4));
        assert!(feed(
            &mut c,
            &wire,
            &chunk(0, NBD_REPLY_TYPE_ERROR_OFFSET, cookie, &e)
        )
        .is_none());
        // A later error does not replace the first.
        let e = encode_error_chunk(NBD_EIO, b"", None);
        assert!(feed(
            &mut c,
            &wire,
            &chunk(DONE, NBD_REPLY_TYPE_ERROR, cookie, &e)
        )
        .is_none());
        assert_eq!(c.command_result(id), Some(libc::EPERM));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(vec![], 4, LIBNBD_READ_ERROR as u32)]
        );

        // Error 0 means EPROTO; a malformed error chunk (message longer
        // than the payload), or one of an unknown error type, still
        // reports its error number.
        for (kind, payload, errno) in [
            (
                NBD_REPLY_TYPE_ERROR,
                encode_error_chunk(0, b"", None),
                libc::EPROTO,
            ),
            (
                NBD_REPLY_TYPE_ERROR,
                vec![0, 0, 0, 28, 0, 200, b'x'],
                libc::ENOSPC,
            ),
            (NBD_REPLY_TYPE_ERROR_BIT | 77, vec![0, 0, 0, 1], libc::EPERM),
            // Too short to hold an error: EPROTO.
            (NBD_REPLY_TYPE_ERROR, vec![0, 0, 1], libc::EPROTO),
        ] {
            let (mut c, wire) = Conn::test_ready(true, false);
            let mut buf = [0u8; 8];
            let (id, cookie) = c.test_read(0, &mut buf, CommandCallbacks::default());
            assert!(feed(&mut c, &wire, &chunk(DONE, kind, cookie, &payload)).is_none());
            assert_eq!(c.command_result(id), Some(errno), "{kind:x} {payload:?}");
            assert!(!c.is_dead());
        }
    }

    #[test]
    fn long_error_chunk_is_skipped_after_its_start() {
        let (mut c, wire) = Conn::test_ready(true, false);
        let mut buf = [0u8; 8];
        let (id, cookie) = c.test_read(0, &mut buf, CommandCallbacks::default());
        let mut e = encode_error_chunk(NBD_EIO, b"m", None);
        e.resize(MAX_ERROR_CHUNK as usize + 1000, 7);
        assert!(feed(
            &mut c,
            &wire,
            &chunk(DONE, NBD_REPLY_TYPE_ERROR, cookie, &e)
        )
        .is_none());
        assert_eq!(c.command_result(id), Some(libc::EIO));
        assert_eq!(wire.unread(), 0);
        assert!(!c.is_dead());
    }

    #[test]
    fn malformed_chunks_fail_the_command_not_the_connection() {
        for (flags, kind, payload, done) in [
            // Unknown type.
            (DONE, 42, vec![1, 2, 3], true),
            // NONE with a payload.
            (DONE, NBD_REPLY_TYPE_NONE, vec![0; 4], true),
            // NONE without DONE: the reply goes on.
            (0, NBD_REPLY_TYPE_NONE, vec![], false),
            // A hole of the wrong size.
            (DONE, NBD_REPLY_TYPE_OFFSET_HOLE, vec![0; 11], true),
            // Data shorter than its offset.
            (DONE, NBD_REPLY_TYPE_OFFSET_DATA, vec![0; 7], true),
            // Block status to a read.
            (
                DONE,
                NBD_REPLY_TYPE_BLOCK_STATUS,
                encode_block_status(1, &[(8, 0)]),
                true,
            ),
        ] {
            let (mut c, wire) = Conn::test_ready(true, false);
            let mut buf = [0u8; 8];
            let (id, cookie) = c.test_read(0, &mut buf, CommandCallbacks::default());
            let mut r = chunk(flags, kind, cookie, &payload);
            r.extend(data_chunk(0, 12345, 0, b"x"));
            assert!(feed(&mut c, &wire, &r).is_none(), "{kind}");
            assert_eq!(wire.unread(), 0);
            let expect = if done { Some(libc::EPROTO) } else { None };
            assert_eq!(c.command_result(id), expect, "{kind}");
            assert!(!c.is_dead());
        }
    }

    #[test]
    fn chunks_without_structured_replies_or_at_the_wrong_offset() {
        let (mut c, wire) = Conn::test_ready(false, false);
        let mut buf = [0u8; 1];
        let (id, cookie) = c.test_read(0, &mut buf, CommandCallbacks::default());
        assert!(feed(&mut c, &wire, &data_chunk(DONE, cookie, 0, b"a")).is_none());
        assert_eq!(c.command_result(id), Some(libc::EPROTO));

        let (mut c, wire) = Conn::test_ready(true, true);
        let mut buf = [0u8; 1];
        let (id, cookie) = c.test_read(512, &mut buf, CommandCallbacks::default());
        let mut p = 512u64.to_be_bytes().to_vec();
        p.push(b'a');
        let r =
            super::super::testwire::extended_chunk(DONE, NBD_REPLY_TYPE_OFFSET_DATA, cookie, 0, &p);
        assert!(feed(&mut c, &wire, &r).is_none());
        assert_eq!(c.command_result(id), Some(libc::EPROTO));
        assert_eq!(buf, [0]);
    }

    #[test]
    fn extended_data_chunk() {
        let (mut c, wire) = Conn::test_ready(true, true);
        let mut buf = [0u8; 3];
        let (id, cookie) = c.test_read(512, &mut buf, CommandCallbacks::default());
        let mut p = 512u64.to_be_bytes().to_vec();
        p.extend_from_slice(b"abc");
        let r = super::super::testwire::extended_chunk(
            DONE,
            NBD_REPLY_TYPE_OFFSET_DATA,
            cookie,
            512,
            &p,
        );
        // Byte by byte: every partial state is resumed.
        for b in &r {
            assert!(feed(&mut c, &wire, &[*b]).is_none());
        }
        assert_eq!(c.command_result(id), Some(0));
        assert_eq!(&buf, b"abc");
    }

    #[test]
    fn abandoned_read_keeps_what_arrived_and_zeroes_the_rest() {
        let (mut c, wire) = Conn::test_ready(true, false);
        let mut buf = [0xffu8; 8];
        let lazy = CommandCallbacks {
            zero_unfilled: true,
            ..CommandCallbacks::default()
        };
        let (id, cookie) = c.test_read(0, &mut buf, lazy);
        let r = data_chunk(DONE, cookie, 0, b"abcdefgh");
        // Header, offset and 3 bytes of data.
        let part = STRUCTURED_REPLY_LEN + 8 + 3;
        assert!(feed(&mut c, &wire, &r[..part]).is_none());
        assert!(c.abandon(id));
        assert_eq!(&buf, b"abc\0\0\0\0\0");
        // The rest of the chunk is read and thrown away.
        assert!(feed(&mut c, &wire, &r[part..]).is_none());
        assert_eq!(wire.unread(), 0);
        assert_eq!(&buf, b"abc\0\0\0\0\0");
        assert!(!c.is_dead());
    }

    /// A hostile server's random replies (plausible fields mixed with
    /// random ones, cut at random points) may kill the connection but
    /// never panic nor write outside the read's buffer.
    #[test]
    fn random_replies_stay_inside_the_buffer() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        const OFF: u64 = 4096;
        let kinds = [
            NBD_REPLY_TYPE_NONE,
            NBD_REPLY_TYPE_OFFSET_DATA,
            NBD_REPLY_TYPE_OFFSET_HOLE,
            NBD_REPLY_TYPE_ERROR,
            NBD_REPLY_TYPE_ERROR_OFFSET,
            NBD_REPLY_TYPE_BLOCK_STATUS,
            3,
            NBD_REPLY_TYPE_ERROR_BIT | 9,
        ];
        for _ in 0..3000 {
            let structured = rnd(4) != 0;
            let extended = structured && rnd(2) == 0;
            let (mut c, wire) = Conn::test_ready(structured, extended);
            // Guard bytes either side of the 32-byte buffer.
            let mut mem = [0xa5u8; 64];
            let (cbs, _seen) = recorder();
            let cbs = CommandCallbacks {
                zero_unfilled: rnd(2) == 0,
                ..cbs
            };
            let (_, cookie) = c.test_read(OFF, &mut mem[16..48], cbs);
            let mut bytes = Vec::new();
            for _ in 0..1 + rnd(4) {
                let near = |r: u64| OFF - 8 + r;
                let kind = kinds[rnd(kinds.len() as u64) as usize];
                let payload = match kind {
                    NBD_REPLY_TYPE_OFFSET_DATA => {
                        let mut p = near(rnd(48)).to_be_bytes().to_vec();
                        p.resize(8 + rnd(40) as usize, 0x11);
                        p
                    }
                    NBD_REPLY_TYPE_OFFSET_HOLE => {
                        encode_hole_chunk(near(rnd(48)), rnd(40) as u32).to_vec()
                    }
                    NBD_REPLY_TYPE_ERROR | NBD_REPLY_TYPE_ERROR_OFFSET => encode_error_chunk(
                        rnd(100) as u32,
                        b"x",
                        (kind == NBD_REPLY_TYPE_ERROR_OFFSET).then(|| near(rnd(48))),
                    ),
                    _ => vec![0x22; rnd(16) as usize],
                };
                let ck = if rnd(8) == 0 { rnd(u64::MAX) } else { cookie };
                let flags = rnd(2) as u16;
                let len = payload.len() as u64;
                if extended {
                    let at = if rnd(4) == 0 { rnd(u64::MAX) } else { OFF };
                    bytes.extend(encode_extended_chunk_header(flags, kind, ck, at, len));
                } else if structured || rnd(2) == 0 {
                    bytes.extend(encode_chunk_header(flags, kind, ck, len as u32));
                } else {
                    bytes.extend(encode_simple_reply(rnd(2) as u32, ck));
                    bytes.extend([0x33; 32]);
                    continue;
                }
                bytes.extend(payload);
            }
            let mut rest = &bytes[..];
            while !rest.is_empty() && !c.is_dead() {
                let n = 1 + rnd(rest.len() as u64) as usize;
                let _ = feed(&mut c, &wire, &rest[..n]);
                rest = &rest[n..];
            }
            assert!(mem[..16].iter().all(|&b| b == 0xa5), "{bytes:?}");
            assert!(mem[48..].iter().all(|&b| b == 0xa5), "{bytes:?}");
        }
    }

    #[test]
    fn chunk_plans() {
        use ChunkPlan::*;
        let read = NBD_CMD_READ;
        let bs = NBD_CMD_BLOCK_STATUS;
        assert_eq!(plan_chunk(NBD_REPLY_TYPE_NONE, 0, read, false), End);
        assert_eq!(plan_chunk(NBD_REPLY_TYPE_NONE, 1, read, false), Reject);
        assert_eq!(plan_chunk(NBD_REPLY_TYPE_OFFSET_DATA, 8, read, false), Data);
        assert_eq!(
            plan_chunk(NBD_REPLY_TYPE_OFFSET_DATA, 7, read, false),
            Reject
        );
        assert_eq!(plan_chunk(NBD_REPLY_TYPE_OFFSET_DATA, 9, bs, true), Reject);
        assert_eq!(
            plan_chunk(NBD_REPLY_TYPE_OFFSET_HOLE, 12, read, false),
            Payload
        );
        assert_eq!(
            plan_chunk(NBD_REPLY_TYPE_OFFSET_HOLE, 13, read, false),
            Reject
        );
        assert_eq!(
            plan_chunk(NBD_REPLY_TYPE_BLOCK_STATUS, 12, bs, true),
            Payload
        );
        assert_eq!(
            plan_chunk(NBD_REPLY_TYPE_BLOCK_STATUS, 12, bs, false),
            Reject
        );
        assert_eq!(
            plan_chunk(NBD_REPLY_TYPE_BLOCK_STATUS, 14, bs, true),
            Reject
        );
        assert_eq!(
            plan_chunk(NBD_REPLY_TYPE_BLOCK_STATUS_EXT, 24, bs, true),
            Payload
        );
        assert_eq!(
            plan_chunk(NBD_REPLY_TYPE_BLOCK_STATUS_EXT, 12, bs, true),
            Reject
        );
        assert_eq!(plan_chunk(NBD_REPLY_TYPE_ERROR, 4, read, false), Payload);
        assert_eq!(plan_chunk(NBD_REPLY_TYPE_ERROR, 3, read, false), Reject);
        assert_eq!(
            plan_chunk(NBD_REPLY_TYPE_ERROR_BIT | 9, 4, bs, false),
            Payload
        );
        assert_eq!(plan_chunk(3, 0, read, false), Reject);
    }
}
