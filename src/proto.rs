//! The NBD wire format: constants, request encoding, reply decoding.
//!
//! Pure functions over byte slices; no I/O. All integers on the wire are
//! big-endian. Names follow the NBD protocol document (`doc/proto.md`).

/// `"NBDMAGIC"`, the first 8 bytes every server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// Second magic of a newstyle server (`"IHAVEOPT"`); also prefixes every option request.
pub const NBD_OPTS_MAGIC: u64 = 0x4948_4156_454f_5054;
/// Second magic of an oldstyle server.
pub const NBD_OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;
/// Magic of every option reply.
pub const NBD_REP_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a compact (28-byte) request.
pub const NBD_REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of an extended (32-byte) request.
pub const NBD_EXTENDED_REQUEST_MAGIC: u32 = 0x21e4_1c71;
/// Magic of a simple reply.
pub const NBD_SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of a structured reply chunk.
pub const NBD_STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
/// Magic of an extended reply chunk.
pub const NBD_EXTENDED_REPLY_MAGIC: u32 = 0x6e8a_278c;

/// Global (handshake) flags sent by the server.
pub const NBD_FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const NBD_FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flags answering them.
pub const NBD_FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const NBD_FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Transmission flags of an export.
pub const NBD_FLAG_HAS_FLAGS: u16 = 1 << 0;
pub const NBD_FLAG_READ_ONLY: u16 = 1 << 1;
pub const NBD_FLAG_SEND_FLUSH: u16 = 1 << 2;
pub const NBD_FLAG_SEND_FUA: u16 = 1 << 3;
pub const NBD_FLAG_ROTATIONAL: u16 = 1 << 4;
pub const NBD_FLAG_SEND_TRIM: u16 = 1 << 5;
pub const NBD_FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const NBD_FLAG_SEND_DF: u16 = 1 << 7;
pub const NBD_FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
pub const NBD_FLAG_SEND_RESIZE: u16 = 1 << 9;
pub const NBD_FLAG_SEND_CACHE: u16 = 1 << 10;
pub const NBD_FLAG_SEND_FAST_ZERO: u16 = 1 << 11;
pub const NBD_FLAG_BLOCK_STAT_PAYLOAD: u16 = 1 << 12;

/// Options.
pub const NBD_OPT_EXPORT_NAME: u32 = 1;
pub const NBD_OPT_ABORT: u32 = 2;
pub const NBD_OPT_LIST: u32 = 3;
pub const NBD_OPT_STARTTLS: u32 = 5;
pub const NBD_OPT_INFO: u32 = 6;
pub const NBD_OPT_GO: u32 = 7;
pub const NBD_OPT_STRUCTURED_REPLY: u32 = 8;
pub const NBD_OPT_LIST_META_CONTEXT: u32 = 9;
pub const NBD_OPT_SET_META_CONTEXT: u32 = 10;
pub const NBD_OPT_EXTENDED_HEADERS: u32 = 11;

/// Option reply types.
pub const NBD_REP_ACK: u32 = 1;
pub const NBD_REP_SERVER: u32 = 2;
pub const NBD_REP_INFO: u32 = 3;
pub const NBD_REP_META_CONTEXT: u32 = 4;
/// Bit set in every error reply type.
pub const NBD_REP_FLAG_ERROR: u32 = 1 << 31;
pub const NBD_REP_ERR_UNSUP: u32 = NBD_REP_FLAG_ERROR | 1;
pub const NBD_REP_ERR_POLICY: u32 = NBD_REP_FLAG_ERROR | 2;
pub const NBD_REP_ERR_INVALID: u32 = NBD_REP_FLAG_ERROR | 3;
pub const NBD_REP_ERR_PLATFORM: u32 = NBD_REP_FLAG_ERROR | 4;
pub const NBD_REP_ERR_TLS_REQD: u32 = NBD_REP_FLAG_ERROR | 5;
pub const NBD_REP_ERR_UNKNOWN: u32 = NBD_REP_FLAG_ERROR | 6;
pub const NBD_REP_ERR_SHUTDOWN: u32 = NBD_REP_FLAG_ERROR | 7;
pub const NBD_REP_ERR_BLOCK_SIZE_REQD: u32 = NBD_REP_FLAG_ERROR | 8;
pub const NBD_REP_ERR_TOO_BIG: u32 = NBD_REP_FLAG_ERROR | 9;
pub const NBD_REP_ERR_EXT_HEADER_REQD: u32 = NBD_REP_FLAG_ERROR | 10;

/// Information types in `NBD_OPT_INFO`/`NBD_OPT_GO`.
pub const NBD_INFO_EXPORT: u16 = 0;
pub const NBD_INFO_NAME: u16 = 1;
pub const NBD_INFO_DESCRIPTION: u16 = 2;
pub const NBD_INFO_BLOCK_SIZE: u16 = 3;

/// Commands.
pub const NBD_CMD_READ: u16 = 0;
pub const NBD_CMD_WRITE: u16 = 1;
pub const NBD_CMD_DISC: u16 = 2;
pub const NBD_CMD_FLUSH: u16 = 3;
pub const NBD_CMD_TRIM: u16 = 4;
pub const NBD_CMD_CACHE: u16 = 5;
pub const NBD_CMD_WRITE_ZEROES: u16 = 6;
pub const NBD_CMD_BLOCK_STATUS: u16 = 7;

/// Command flags.
pub const NBD_CMD_FLAG_FUA: u16 = 1 << 0;
pub const NBD_CMD_FLAG_NO_HOLE: u16 = 1 << 1;
pub const NBD_CMD_FLAG_DF: u16 = 1 << 2;
pub const NBD_CMD_FLAG_REQ_ONE: u16 = 1 << 3;
pub const NBD_CMD_FLAG_FAST_ZERO: u16 = 1 << 4;
pub const NBD_CMD_FLAG_PAYLOAD_LEN: u16 = 1 << 5;

/// Structured reply flag: last chunk of the reply.
pub const NBD_REPLY_FLAG_DONE: u16 = 1 << 0;
/// Structured reply chunk types.
pub const NBD_REPLY_TYPE_NONE: u16 = 0;
pub const NBD_REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const NBD_REPLY_TYPE_OFFSET_HOLE: u16 = 2;
pub const NBD_REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const NBD_REPLY_TYPE_BLOCK_STATUS_EXT: u16 = 6;
/// Bit set in every error chunk type.
pub const NBD_REPLY_TYPE_ERROR_BIT: u16 = 1 << 15;
pub const NBD_REPLY_TYPE_ERROR: u16 = NBD_REPLY_TYPE_ERROR_BIT | 1;
pub const NBD_REPLY_TYPE_ERROR_OFFSET: u16 = NBD_REPLY_TYPE_ERROR_BIT | 2;

/// Error values on the wire.
pub const NBD_SUCCESS: u32 = 0;
pub const NBD_EPERM: u32 = 1;
pub const NBD_EIO: u32 = 5;
pub const NBD_ENOMEM: u32 = 12;
pub const NBD_EINVAL: u32 = 22;
pub const NBD_ENOSPC: u32 = 28;
pub const NBD_EOVERFLOW: u32 = 75;
pub const NBD_ENOTSUP: u32 = 95;
pub const NBD_ESHUTDOWN: u32 = 108;

/// Size of the server's first two magics.
pub const GREETING_LEN: usize = 16;
/// Size of the rest of an oldstyle greeting: size, flags, 124 zero bytes.
pub const OLDSTYLE_REST_LEN: usize = 8 + 4 + 124;
/// Size of a compact request header.
pub const REQUEST_LEN: usize = 28;
/// Size of an extended request header.
pub const EXTENDED_REQUEST_LEN: usize = 32;
/// Size of a simple reply header.
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Size of a structured reply chunk header.
pub const STRUCTURED_REPLY_LEN: usize = 20;
/// Size of an extended reply chunk header.
pub const EXTENDED_REPLY_LEN: usize = 32;
/// Size of an option request header (magic, option, length).
pub const OPTION_REQUEST_LEN: usize = 16;
/// Size of an option reply header (magic, option, type, length).
pub const OPTION_REPLY_LEN: usize = 20;
/// Size of the reply to `NBD_OPT_EXPORT_NAME` without the 124 zero bytes.
pub const EXPORT_NAME_REPLY_LEN: usize = 10;
/// Longest string (export name, description) the protocol allows.
pub const MAX_STRING_LEN: usize = 4096;

/// The big-endian 16-bit integer at `b[at..at + 2]` (panics if `b` is short).
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The big-endian 32-bit integer at `b[at..at + 4]` (panics if `b` is short).
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The big-endian 64-bit integer at `b[at..at + 8]` (panics if `b` is short).
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// Maps an error value from the wire to the errno libnbd reports.
pub fn errno_of_nbd_error(error: u32) -> i32 {
    match error {
        NBD_SUCCESS => 0,
        NBD_EPERM => libc::EPERM,
        NBD_EIO => libc::EIO,
        NBD_ENOMEM => libc::ENOMEM,
        NBD_EINVAL => libc::EINVAL,
        NBD_ENOSPC => libc::ENOSPC,
        NBD_EOVERFLOW => libc::EOVERFLOW,
        NBD_ENOTSUP => libc::ENOTSUP,
        NBD_ESHUTDOWN => libc::ESHUTDOWN,
        _ => libc::EINVAL,
    }
}

/// The server's greeting, from its first 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// Oldstyle: the export's size and flags follow at once.
    Oldstyle,
    /// Newstyle: 16 bits of global flags follow, then option haggling.
    Newstyle,
}

/// Decodes the first 16 bytes a server sends.
pub fn decode_greeting(b: &[u8; GREETING_LEN]) -> Option<Greeting> {
    if be64(b, 0) != NBD_MAGIC {
        return None;
    }
    match be64(b, 8) {
        NBD_OPTS_MAGIC => Some(Greeting::Newstyle),
        NBD_OLDSTYLE_MAGIC => Some(Greeting::Oldstyle),
        _ => None,
    }
}

/// An export's size and transmission flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportInfo {
    pub size: u64,
    pub flags: u16,
}

/// Decodes the rest of an oldstyle greeting (size, 32-bit flags, zeros).
pub fn decode_oldstyle_rest(b: &[u8]) -> ExportInfo {
    ExportInfo {
        size: be64(b, 0),
        flags: be32(b, 8) as u16,
    }
}

/// Decodes the reply to `NBD_OPT_EXPORT_NAME` (size, flags).
pub fn decode_export_name_reply(b: &[u8]) -> ExportInfo {
    ExportInfo {
        size: be64(b, 0),
        flags: be16(b, 8),
    }
}

/// Appends an option request: header then `payload`.
pub fn encode_option(out: &mut Vec<u8>, option: u32, payload: &[u8]) {
    out.extend_from_slice(&NBD_OPTS_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends an `NBD_OPT_GO`/`NBD_OPT_INFO` request for `name`, asking for `infos`.
pub fn encode_opt_go(out: &mut Vec<u8>, option: u32, name: &[u8], infos: &[u16]) {
    let mut payload = Vec::with_capacity(4 + name.len() + 2 + 2 * infos.len());
    payload.extend_from_slice(&(name.len() as u32).to_be_bytes());
    payload.extend_from_slice(name);
    payload.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for info in infos {
        payload.extend_from_slice(&info.to_be_bytes());
    }
    encode_option(out, option, &payload);
}

/// The header of an option reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionReply {
    pub option: u32,
    pub reply_type: u32,
    pub length: u32,
}

/// Decodes an option reply header; `None` if the magic is wrong.
pub fn decode_option_reply(b: &[u8; OPTION_REPLY_LEN]) -> Option<OptionReply> {
    if be64(b, 0) != NBD_REP_MAGIC {
        return None;
    }
    Some(OptionReply {
        option: be32(b, 8),
        reply_type: be32(b, 12),
        length: be32(b, 16),
    })
}

/// One `NBD_REP_INFO` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Info {
    Export(ExportInfo),
    Name(Vec<u8>),
    Description(Vec<u8>),
    BlockSize {
        minimum: u32,
        preferred: u32,
        maximum: u32,
    },
    /// A type this client does not know; to be ignored.
    Unknown(u16),
}

/// Decodes an `NBD_REP_INFO` payload; `None` if its length is wrong for its type.
pub fn decode_info(b: &[u8]) -> Option<Info> {
    if b.len() < 2 {
        return None;
    }
    let kind = be16(b, 0);
    let rest = &b[2..];
    match kind {
        NBD_INFO_EXPORT if rest.len() == 10 => Some(Info::Export(ExportInfo {
            size: be64(rest, 0),
            flags: be16(rest, 8),
        })),
        NBD_INFO_NAME if rest.len() <= MAX_STRING_LEN => Some(Info::Name(rest.to_vec())),
        NBD_INFO_DESCRIPTION if rest.len() <= MAX_STRING_LEN => {
            Some(Info::Description(rest.to_vec()))
        }
        NBD_INFO_BLOCK_SIZE if rest.len() == 12 => Some(Info::BlockSize {
            minimum: be32(rest, 0),
            preferred: be32(rest, 4),
            maximum: be32(rest, 8),
        }),
        NBD_INFO_EXPORT | NBD_INFO_NAME | NBD_INFO_DESCRIPTION | NBD_INFO_BLOCK_SIZE => None,
        other => Some(Info::Unknown(other)),
    }
}

/// A transmission request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub offset: u64,
    pub count: u64,
}

/// Writes a compact request header into `out`; `count` must fit in 32 bits.
pub fn encode_request(req: &Request, out: &mut [u8; REQUEST_LEN]) {
    debug_assert!(req.count <= u32::MAX as u64);
    out[0..4].copy_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&req.flags.to_be_bytes());
    out[6..8].copy_from_slice(&req.kind.to_be_bytes());
    out[8..16].copy_from_slice(&req.cookie.to_be_bytes());
    out[16..24].copy_from_slice(&req.offset.to_be_bytes());
    out[24..28].copy_from_slice(&(req.count as u32).to_be_bytes());
}

/// Writes an extended request header into `out`.
pub fn encode_extended_request(req: &Request, out: &mut [u8; EXTENDED_REQUEST_LEN]) {
    out[0..4].copy_from_slice(&NBD_EXTENDED_REQUEST_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&req.flags.to_be_bytes());
    out[6..8].copy_from_slice(&req.kind.to_be_bytes());
    out[8..16].copy_from_slice(&req.cookie.to_be_bytes());
    out[16..24].copy_from_slice(&req.offset.to_be_bytes());
    out[24..32].copy_from_slice(&req.count.to_be_bytes());
}

/// Decodes a request header of either size (used by tests and fake servers).
pub fn decode_request(b: &[u8]) -> Option<Request> {
    if b.len() >= REQUEST_LEN && be32(b, 0) == NBD_REQUEST_MAGIC {
        Some(Request {
            flags: be16(b, 4),
            kind: be16(b, 6),
            cookie: be64(b, 8),
            offset: be64(b, 16),
            count: be32(b, 24) as u64,
        })
    } else if b.len() >= EXTENDED_REQUEST_LEN && be32(b, 0) == NBD_EXTENDED_REQUEST_MAGIC {
        Some(Request {
            flags: be16(b, 4),
            kind: be16(b, 6),
            cookie: be64(b, 8),
            offset: be64(b, 16),
            count: be64(b, 24),
        })
    } else {
        None
    }
}

/// The header of a transmission reply, of any of the three kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyHeader {
    /// A simple reply: the error, and (for a successful read) the data follows.
    Simple { error: u32, cookie: u64 },
    /// A structured or extended chunk header: `length` payload bytes follow.
    /// `offset` is only present in extended chunks (0 otherwise).
    Chunk {
        flags: u16,
        kind: u16,
        cookie: u64,
        offset: u64,
        length: u64,
    },
}

/// How many header bytes a reply starting with this magic has, or `None` for a bad magic.
pub fn reply_header_len(magic: u32) -> Option<usize> {
    match magic {
        NBD_SIMPLE_REPLY_MAGIC => Some(SIMPLE_REPLY_LEN),
        NBD_STRUCTURED_REPLY_MAGIC => Some(STRUCTURED_REPLY_LEN),
        NBD_EXTENDED_REPLY_MAGIC => Some(EXTENDED_REPLY_LEN),
        _ => None,
    }
}

/// Reads the magic at the start of a reply (needs 4 bytes).
pub fn reply_magic(b: &[u8]) -> u32 {
    be32(b, 0)
}

/// Decodes a reply header; `b` must hold `reply_header_len` bytes for its magic.
pub fn decode_reply_header(b: &[u8]) -> Option<ReplyHeader> {
    match reply_magic(b) {
        NBD_SIMPLE_REPLY_MAGIC if b.len() >= SIMPLE_REPLY_LEN => Some(ReplyHeader::Simple {
            error: be32(b, 4),
            cookie: be64(b, 8),
        }),
        NBD_STRUCTURED_REPLY_MAGIC if b.len() >= STRUCTURED_REPLY_LEN => Some(ReplyHeader::Chunk {
            flags: be16(b, 4),
            kind: be16(b, 6),
            cookie: be64(b, 8),
            offset: 0,
            length: be32(b, 16) as u64,
        }),
        NBD_EXTENDED_REPLY_MAGIC if b.len() >= EXTENDED_REPLY_LEN => Some(ReplyHeader::Chunk {
            flags: be16(b, 4),
            kind: be16(b, 6),
            cookie: be64(b, 8),
            offset: be64(b, 16),
            length: be64(b, 24),
        }),
        _ => None,
    }
}

/// Writes a simple reply header (used by tests and fake servers).
pub fn encode_simple_reply(error: u32, cookie: u64) -> [u8; SIMPLE_REPLY_LEN] {
    let mut out = [0u8; SIMPLE_REPLY_LEN];
    out[0..4].copy_from_slice(&NBD_SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out
}

/// Writes a structured chunk header (used by tests and fake servers).
pub fn encode_chunk_header(
    flags: u16,
    kind: u16,
    cookie: u64,
    length: u32,
) -> [u8; STRUCTURED_REPLY_LEN] {
    let mut out = [0u8; STRUCTURED_REPLY_LEN];
    out[0..4].copy_from_slice(&NBD_STRUCTURED_REPLY_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&kind.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out[16..20].copy_from_slice(&length.to_be_bytes());
    out
}

/// Writes an extended chunk header (used by tests and fake servers).
pub fn encode_extended_chunk_header(
    flags: u16,
    kind: u16,
    cookie: u64,
    offset: u64,
    length: u64,
) -> [u8; EXTENDED_REPLY_LEN] {
    let mut out = [0u8; EXTENDED_REPLY_LEN];
    out[0..4].copy_from_slice(&NBD_EXTENDED_REPLY_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&kind.to_be_bytes());
    out[8..16].copy_from_slice(&cookie.to_be_bytes());
    out[16..24].copy_from_slice(&offset.to_be_bytes());
    out[24..32].copy_from_slice(&length.to_be_bytes());
    out
}

/// Writes an error chunk payload: error, message, and for
/// `NBD_REPLY_TYPE_ERROR_OFFSET` the offset (used by tests and fake servers).
pub fn encode_error_chunk(error: u32, message: &[u8], offset: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + message.len() + 8);
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    if let Some(offset) = offset {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    out
}

/// Writes an `OFFSET_HOLE` payload (used by tests and fake servers).
pub fn encode_hole_chunk(offset: u64, length: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0..8].copy_from_slice(&offset.to_be_bytes());
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out
}

/// Writes an `NBD_REPLY_TYPE_BLOCK_STATUS` payload: the context id, then
/// (length, flags) descriptors (used by tests and fake servers).
pub fn encode_block_status(context_id: u32, extents: &[(u32, u32)]) -> Vec<u8> {
    let mut out = context_id.to_be_bytes().to_vec();
    for (length, flags) in extents {
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
    }
    out
}

/// Writes an `NBD_REPLY_TYPE_BLOCK_STATUS_EXT` payload: the context id,
/// the descriptor count, then 64-bit (length, flags) descriptors (used by
/// tests and fake servers).
pub fn encode_block_status_ext(context_id: u32, extents: &[(u64, u64)]) -> Vec<u8> {
    let mut out = context_id.to_be_bytes().to_vec();
    out.extend_from_slice(&(extents.len() as u32).to_be_bytes());
    for (length, flags) in extents {
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
    }
    out
}

/// Writes the server's first 16 bytes (used by tests and fake servers).
pub fn encode_greeting(greeting: Greeting) -> [u8; GREETING_LEN] {
    let mut out = [0u8; GREETING_LEN];
    out[0..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    let second = match greeting {
        Greeting::Oldstyle => NBD_OLDSTYLE_MAGIC,
        Greeting::Newstyle => NBD_OPTS_MAGIC,
    };
    out[8..16].copy_from_slice(&second.to_be_bytes());
    out
}

/// Writes the rest of an oldstyle greeting: size, flags (the high 16 bits
/// `gflags`), 124 zeros (used by tests and fake servers).
pub fn encode_oldstyle_rest(info: ExportInfo, gflags: u16) -> [u8; OLDSTYLE_REST_LEN] {
    let mut out = [0u8; OLDSTYLE_REST_LEN];
    out[0..8].copy_from_slice(&info.size.to_be_bytes());
    out[8..10].copy_from_slice(&gflags.to_be_bytes());
    out[10..12].copy_from_slice(&info.flags.to_be_bytes());
    out
}

/// Writes the reply to `NBD_OPT_EXPORT_NAME`: size, flags, and unless
/// `no_zeroes` 124 zeros (used by tests and fake servers).
pub fn encode_export_name_reply(info: ExportInfo, no_zeroes: bool) -> Vec<u8> {
    let mut out = info.size.to_be_bytes().to_vec();
    out.extend_from_slice(&info.flags.to_be_bytes());
    if !no_zeroes {
        out.extend_from_slice(&[0u8; 124]);
    }
    out
}

/// Appends an option reply: header then `payload` (used by tests and fake
/// servers).
pub fn encode_option_reply(out: &mut Vec<u8>, option: u32, reply_type: u32, payload: &[u8]) {
    out.extend_from_slice(&NBD_REP_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply_type.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Writes an `NBD_REP_INFO` payload (used by tests and fake servers).
/// `Info::Unknown` gives just the type.
pub fn encode_info(info: &Info) -> Vec<u8> {
    let mut out = Vec::new();
    match info {
        Info::Export(e) => {
            out.extend_from_slice(&NBD_INFO_EXPORT.to_be_bytes());
            out.extend_from_slice(&e.size.to_be_bytes());
            out.extend_from_slice(&e.flags.to_be_bytes());
        }
        Info::Name(n) => {
            out.extend_from_slice(&NBD_INFO_NAME.to_be_bytes());
            out.extend_from_slice(n);
        }
        Info::Description(d) => {
            out.extend_from_slice(&NBD_INFO_DESCRIPTION.to_be_bytes());
            out.extend_from_slice(d);
        }
        Info::BlockSize {
            minimum,
            preferred,
            maximum,
        } => {
            out.extend_from_slice(&NBD_INFO_BLOCK_SIZE.to_be_bytes());
            for v in [minimum, preferred, maximum] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Info::Unknown(kind) => out.extend_from_slice(&kind.to_be_bytes()),
    }
    out
}

/// The fixed-size start of a chunk payload, once decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkPrefix {
    /// `NBD_REPLY_TYPE_OFFSET_DATA`: the data for `offset` follows (payload minus 8 bytes).
    Data { offset: u64 },
    /// `NBD_REPLY_TYPE_OFFSET_HOLE`: `length` bytes of zeros at `offset`.
    Hole { offset: u64, length: u32 },
    /// An error chunk: the error, its message, and (for `ERROR_OFFSET`) the offset.
    Error {
        error: u32,
        message: Vec<u8>,
        offset: Option<u64>,
    },
}

/// Decodes an error chunk payload; `None` if its lengths are inconsistent.
pub fn decode_error_chunk(kind: u16, b: &[u8]) -> Option<ChunkPrefix> {
    if b.len() < 6 {
        return None;
    }
    let error = be32(b, 0);
    let msg_len = be16(b, 4) as usize;
    let rest = &b[6..];
    if msg_len > rest.len() {
        return None;
    }
    let message = rest[..msg_len].to_vec();
    let offset = if kind == NBD_REPLY_TYPE_ERROR_OFFSET {
        if rest.len() != msg_len + 8 {
            return None;
        }
        Some(be64(rest, msg_len))
    } else {
        None
    };
    Some(ChunkPrefix::Error {
        error,
        message,
        offset,
    })
}

/// Decodes an `OFFSET_HOLE` payload (12 bytes).
pub fn decode_hole_chunk(b: &[u8]) -> Option<ChunkPrefix> {
    if b.len() != 12 {
        return None;
    }
    Some(ChunkPrefix::Hole {
        offset: be64(b, 0),
        length: be32(b, 8),
    })
}

/// Decodes the 8-byte offset that starts an `OFFSET_DATA` payload.
pub fn decode_data_offset(b: &[u8]) -> u64 {
    be64(b, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting() {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(b"NBDMAGIC");
        b[8..].copy_from_slice(b"IHAVEOPT");
        assert_eq!(decode_greeting(&b), Some(Greeting::Newstyle));
        b[8..].copy_from_slice(&NBD_OLDSTYLE_MAGIC.to_be_bytes());
        assert_eq!(decode_greeting(&b), Some(Greeting::Oldstyle));
        b[0] = b'X';
        assert_eq!(decode_greeting(&b), None);
    }

    #[test]
    fn request_round_trip() {
        let req = Request {
            flags: NBD_CMD_FLAG_FUA,
            kind: NBD_CMD_WRITE,
            cookie: 0x0102_0304_0506_0708,
            offset: 1 << 40,
            count: 4096,
        };
        let mut b = [0u8; REQUEST_LEN];
        encode_request(&req, &mut b);
        assert_eq!(&b[0..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(&b[4..8], &[0, 1, 0, 1]);
        assert_eq!(decode_request(&b), Some(req));

        let big = Request {
            count: 1 << 33,
            ..req
        };
        let mut e = [0u8; EXTENDED_REQUEST_LEN];
        encode_extended_request(&big, &mut e);
        assert_eq!(&e[0..4], &NBD_EXTENDED_REQUEST_MAGIC.to_be_bytes());
        assert_eq!(decode_request(&e), Some(big));
        assert_eq!(decode_request(&e[..20]), None);
    }

    #[test]
    fn simple_reply_round_trip() {
        let b = encode_simple_reply(NBD_EIO, 77);
        assert_eq!(reply_header_len(reply_magic(&b)), Some(SIMPLE_REPLY_LEN));
        assert_eq!(
            decode_reply_header(&b),
            Some(ReplyHeader::Simple {
                error: NBD_EIO,
                cookie: 77
            })
        );
    }

    #[test]
    fn structured_reply_round_trip() {
        let b = encode_chunk_header(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, 9, 520);
        assert_eq!(
            reply_header_len(reply_magic(&b)),
            Some(STRUCTURED_REPLY_LEN)
        );
        assert_eq!(
            decode_reply_header(&b),
            Some(ReplyHeader::Chunk {
                flags: NBD_REPLY_FLAG_DONE,
                kind: NBD_REPLY_TYPE_OFFSET_DATA,
                cookie: 9,
                offset: 0,
                length: 520
            })
        );
        assert_eq!(decode_reply_header(&b[..10]), None);
    }

    #[test]
    fn extended_reply_header() {
        let mut b = [0u8; EXTENDED_REPLY_LEN];
        b[0..4].copy_from_slice(&NBD_EXTENDED_REPLY_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&NBD_REPLY_FLAG_DONE.to_be_bytes());
        b[6..8].copy_from_slice(&NBD_REPLY_TYPE_NONE.to_be_bytes());
        b[8..16].copy_from_slice(&5u64.to_be_bytes());
        b[16..24].copy_from_slice(&4096u64.to_be_bytes());
        b[24..32].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(reply_header_len(reply_magic(&b)), Some(EXTENDED_REPLY_LEN));
        assert_eq!(
            decode_reply_header(&b),
            Some(ReplyHeader::Chunk {
                flags: 1,
                kind: 0,
                cookie: 5,
                offset: 4096,
                length: 0
            })
        );
        assert_eq!(reply_header_len(0xdead_beef), None);
    }

    #[test]
    fn chunk_payloads() {
        let mut e = vec![0, 0, 0, 5, 0, 3];
        e.extend_from_slice(b"bad");
        assert_eq!(
            decode_error_chunk(NBD_REPLY_TYPE_ERROR, &e),
            Some(ChunkPrefix::Error {
                error: NBD_EIO,
                message: b"bad".to_vec(),
                offset: None
            })
        );
        // Message length past the payload.
        let mut lie = e.clone();
        lie[5] = 200;
        assert_eq!(decode_error_chunk(NBD_REPLY_TYPE_ERROR, &lie), None);
        let mut eo = e.clone();
        eo.extend_from_slice(&512u64.to_be_bytes());
        assert_eq!(
            decode_error_chunk(NBD_REPLY_TYPE_ERROR_OFFSET, &eo),
            Some(ChunkPrefix::Error {
                error: NBD_EIO,
                message: b"bad".to_vec(),
                offset: Some(512)
            })
        );
        assert_eq!(decode_error_chunk(NBD_REPLY_TYPE_ERROR_OFFSET, &e), None);

        let mut h = 4096u64.to_be_bytes().to_vec();
        h.extend_from_slice(&512u32.to_be_bytes());
        assert_eq!(
            decode_hole_chunk(&h),
            Some(ChunkPrefix::Hole {
                offset: 4096,
                length: 512
            })
        );
        assert_eq!(decode_hole_chunk(&h[..11]), None);
        assert_eq!(decode_data_offset(&h), 4096);
    }

    #[test]
    fn options() {
        let mut out = Vec::new();
        encode_opt_go(&mut out, NBD_OPT_GO, b"disk", &[NBD_INFO_BLOCK_SIZE]);
        assert_eq!(&out[0..8], b"IHAVEOPT");
        assert_eq!(&out[8..12], &7u32.to_be_bytes());
        assert_eq!(&out[12..16], &(4 + 4 + 2 + 2u32).to_be_bytes());
        assert_eq!(&out[16..20], &4u32.to_be_bytes());
        assert_eq!(&out[20..24], b"disk");
        assert_eq!(&out[24..28], &[0, 1, 0, 3]);

        let mut r = [0u8; OPTION_REPLY_LEN];
        r[0..8].copy_from_slice(&NBD_REP_MAGIC.to_be_bytes());
        r[8..12].copy_from_slice(&NBD_OPT_GO.to_be_bytes());
        r[12..16].copy_from_slice(&NBD_REP_ERR_UNSUP.to_be_bytes());
        r[16..20].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            decode_option_reply(&r),
            Some(OptionReply {
                option: NBD_OPT_GO,
                reply_type: NBD_REP_ERR_UNSUP,
                length: 0
            })
        );
        r[0] ^= 1;
        assert_eq!(decode_option_reply(&r), None);
    }

    #[test]
    fn infos() {
        let mut b = vec![0, 0];
        b.extend_from_slice(&(1u64 << 20).to_be_bytes());
        b.extend_from_slice(&(NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH).to_be_bytes());
        assert_eq!(
            decode_info(&b),
            Some(Info::Export(ExportInfo {
                size: 1 << 20,
                flags: 5
            }))
        );
        assert_eq!(decode_info(&b[..11]), None);
        let mut bs = vec![0, 3];
        for v in [1u32, 4096, 1 << 25] {
            bs.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(
            decode_info(&bs),
            Some(Info::BlockSize {
                minimum: 1,
                preferred: 4096,
                maximum: 1 << 25
            })
        );
        assert_eq!(
            decode_info(&[0, 2, b'h', b'i']),
            Some(Info::Description(b"hi".to_vec()))
        );
        assert_eq!(decode_info(&[0, 1, b'x']), Some(Info::Name(b"x".to_vec())));
        assert_eq!(decode_info(&[0, 9, 1, 2]), Some(Info::Unknown(9)));
        assert_eq!(decode_info(&[0]), None);
    }

    #[test]
    fn export_name_and_oldstyle() {
        let mut b = (1u64 << 30).to_be_bytes().to_vec();
        b.extend_from_slice(&3u16.to_be_bytes());
        assert_eq!(
            decode_export_name_reply(&b),
            ExportInfo {
                size: 1 << 30,
                flags: 3
            }
        );
        let mut o = 512u64.to_be_bytes().to_vec();
        o.extend_from_slice(&3u32.to_be_bytes());
        o.extend_from_slice(&[0u8; 124]);
        assert_eq!(o.len(), OLDSTYLE_REST_LEN);
        assert_eq!(
            decode_oldstyle_rest(&o),
            ExportInfo {
                size: 512,
                flags: 3
            }
        );
    }

    #[test]
    fn errno_mapping() {
        assert_eq!(errno_of_nbd_error(NBD_EPERM), libc::EPERM);
        assert_eq!(errno_of_nbd_error(NBD_ENOSPC), libc::ENOSPC);
        assert_eq!(errno_of_nbd_error(NBD_ESHUTDOWN), libc::ESHUTDOWN);
        assert_eq!(errno_of_nbd_error(999), libc::EINVAL);
        assert_eq!(errno_of_nbd_error(0), 0);
    }

    #[test]
    fn encoders_round_trip() {
        let e = encode_extended_chunk_header(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 5, 4096, 0);
        assert_eq!(reply_header_len(reply_magic(&e)), Some(EXTENDED_REPLY_LEN));
        assert_eq!(
            decode_reply_header(&e),
            Some(ReplyHeader::Chunk {
                flags: 1,
                kind: 0,
                cookie: 5,
                offset: 4096,
                length: 0
            })
        );
        assert_eq!(
            decode_error_chunk(
                NBD_REPLY_TYPE_ERROR_OFFSET,
                &encode_error_chunk(NBD_EIO, b"m", Some(9))
            ),
            Some(ChunkPrefix::Error {
                error: NBD_EIO,
                message: b"m".to_vec(),
                offset: Some(9)
            })
        );
        assert_eq!(
            decode_hole_chunk(&encode_hole_chunk(7, 3)),
            Some(ChunkPrefix::Hole {
                offset: 7,
                length: 3
            })
        );
        assert_eq!(
            encode_block_status(1, &[(512, 3)]),
            [0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 3]
        );
        let ext = encode_block_status_ext(1, &[(1 << 33, 1)]);
        assert_eq!(ext.len(), 8 + 16);
        assert_eq!(be32(&ext, 4), 1);
        assert_eq!(be64(&ext, 8), 1 << 33);
        assert_eq!(
            decode_greeting(&encode_greeting(Greeting::Newstyle)),
            Some(Greeting::Newstyle)
        );
        assert_eq!(
            decode_greeting(&encode_greeting(Greeting::Oldstyle)),
            Some(Greeting::Oldstyle)
        );
        let info = ExportInfo {
            size: 1 << 20,
            flags: NBD_FLAG_HAS_FLAGS,
        };
        assert_eq!(decode_oldstyle_rest(&encode_oldstyle_rest(info, 0)), info);
        assert_eq!(be16(&encode_oldstyle_rest(info, 2), 8), 2);
        assert_eq!(
            encode_export_name_reply(info, false).len(),
            EXPORT_NAME_REPLY_LEN + 124
        );
        assert_eq!(
            decode_export_name_reply(&encode_export_name_reply(info, true)),
            info
        );
        let mut r = Vec::new();
        encode_option_reply(&mut r, NBD_OPT_GO, NBD_REP_INFO, &[1, 2]);
        assert_eq!(
            decode_option_reply(r[..OPTION_REPLY_LEN].try_into().unwrap()),
            Some(OptionReply {
                option: NBD_OPT_GO,
                reply_type: NBD_REP_INFO,
                length: 2
            })
        );
        for i in [
            Info::Export(info),
            Info::Name(b"n".to_vec()),
            Info::Description(b"d".to_vec()),
            Info::BlockSize {
                minimum: 1,
                preferred: 4096,
                maximum: 1 << 25,
            },
            Info::Unknown(99),
        ] {
            assert_eq!(decode_info(&encode_info(&i)), Some(i));
        }
    }
}
