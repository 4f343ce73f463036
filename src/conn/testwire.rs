//! Test-only: a [`Conn`] talking to a scripted server in memory, so the
//! decoders can be fed exactly the bytes a test builds with the `proto`
//! encoders.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use super::{CommandCallbacks, CommandId, Conn, Phase};
use crate::proto;
use crate::transport::Transport;

/// One extended-header reply chunk (header and payload) as a server
/// sends it, the payload's length in the header.
pub(super) fn extended_chunk(
    flags: u16,
    kind: u16,
    cookie: u64,
    offset: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut chunk =
        proto::encode_extended_chunk_header(flags, kind, cookie, offset, payload.len() as u64)
            .to_vec();
    chunk.extend_from_slice(payload);
    chunk
}

#[derive(Default)]
struct WireState {
    /// What the server has sent and the client not yet received.
    inbound: VecDeque<u8>,
    /// What the client has sent.
    sent: Vec<u8>,
    /// The server has closed: receiving at the end gives 0.
    closed: bool,
}

/// The server's end of the wire.
#[derive(Clone, Default)]
pub(super) struct Wire(Arc<Mutex<WireState>>);

impl Wire {
    /// Queues bytes for the client to receive.
    pub(super) fn push(&self, bytes: &[u8]) {
        self.0.lock().unwrap().inbound.extend(bytes);
    }

    /// Takes what the client has sent so far.
    pub(super) fn take_sent(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.lock().unwrap().sent)
    }

    /// Bytes queued and not yet received.
    pub(super) fn unread(&self) -> usize {
        self.0.lock().unwrap().inbound.len()
    }
}

/// The client's end; its fd (for `Transport::fd`) is /dev/null, which
/// no test polls.
struct WireTransport(Wire, File);

impl Transport for WireTransport {
    fn fd(&self) -> BorrowedFd<'_> {
        self.1.as_fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_pair(buf, &mut [])
    }

    fn recv_pair(&mut self, first: &mut [u8], then: &mut [u8]) -> io::Result<usize> {
        let mut w = self.0 .0.lock().unwrap();
        if w.inbound.is_empty() {
            return if w.closed {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let mut n = 0;
        for b in first.iter_mut().chain(then.iter_mut()) {
            match w.inbound.pop_front() {
                Some(x) => *b = x,
                None => break,
            }
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut w = self.0 .0.lock().unwrap();
        let mut n = 0;
        for b in bufs {
            w.sent.extend_from_slice(b);
            n += b.len();
        }
        Ok(n)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn shutdown_both(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn {
    /// A connection at the start of the handshake.
    pub(super) fn test_handshake() -> (Conn, Wire) {
        let wire = Wire::default();
        let mut c = Conn::new();
        c.start_handshake(Box::new(WireTransport(
            wire.clone(),
            File::open("/dev/null").unwrap(),
        )));
        (c, wire)
    }

    /// A connection in transmission, with structured replies and extended
    /// headers as given, to an export of 1 MiB.
    pub(super) fn test_ready(structured: bool, extended: bool) -> (Conn, Wire) {
        let (mut c, wire) = Conn::test_handshake();
        c.phase = Phase::Ready;
        c.negotiated.structured_replies = structured;
        c.negotiated.extended_headers = extended;
        c.negotiated.export = proto::ExportInfo {
            size: 1 << 20,
            flags: proto::NBD_FLAG_HAS_FLAGS,
        };
        (c, wire)
    }

    /// Issues a read of `buf.len()` bytes at `offset` into `buf`; returns
    /// its id and the cookie the server must answer.
    ///
    /// `buf` must stay alive, and otherwise untouched, until the command
    /// is done.
    pub(super) fn test_read(
        &mut self,
        offset: u64,
        buf: &mut [u8],
        callbacks: CommandCallbacks,
    ) -> (CommandId, u64) {
        let id = self
            .issue(
                proto::NBD_CMD_READ,
                0,
                offset,
                buf.len() as u64,
                buf.as_mut_ptr(),
                callbacks,
            )
            .expect("issue");
        (id, id.wire_cookie())
    }
}
