//! NBD URIs: parsing for `nbd_connect_uri` and building for `nbd_get_uri`.
//!
//! The syntax is RFC 3986's, cut into parts here the way libnbd 1.22's
//! parser (libxml2's `xmlParseURI`) does it: strictly, with no
//! normalisation (no IDNA, no case folding, no `..` removal, nothing
//! escaped for the caller). On top come the NBD URI rules: the schemes,
//! the query parameters, the percent-decoding of each part, and libnbd's
//! policy settings and error messages.

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::flags::raw::{
    LIBNBD_ALLOW_TRANSPORT_SSH, LIBNBD_ALLOW_TRANSPORT_TCP, LIBNBD_ALLOW_TRANSPORT_UNIX,
    LIBNBD_ALLOW_TRANSPORT_VSOCK, LIBNBD_TLS_DISABLE, LIBNBD_TLS_REQUIRE,
};
use crate::transport::SockAddr;
use crate::{Error, Result};

/// The port an NBD URI means when it names none.
pub(crate) const DEFAULT_PORT: u16 = 10809;
/// The vsock CID of the host, used when a vsock URI names none.
const VSOCK_HOST_CID: u32 = 2;
/// The Secure Shell port an ssh URI means when it names none.
const SSH_PORT: u16 = 22;

/// Where a URI says to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Tcp {
        host: String,
        port: String,
    },
    Unix {
        path: Vec<u8>,
    },
    Vsock {
        cid: u32,
        port: u32,
    },
    /// A Secure Shell server (`host`, `port`), and on it the Unix socket
    /// of the NBD server, or `None` for its TCP port 10809.
    Ssh {
        host: String,
        port: u32,
        socket: Option<Vec<u8>>,
    },
}

impl Target {
    /// The command that tunnels NBD through Secure Shell, as libnbd 1.22
    /// runs it: `ssh -p PORT HOST nc -U SOCKET` or `... nc localhost 10809`.
    /// (The URI's user name is for TLS, not for ssh.) `None` for the
    /// other transports.
    pub(crate) fn ssh_command(&self) -> Option<Vec<Vec<u8>>> {
        let Target::Ssh { host, port, socket } = self else {
            return None;
        };
        let mut argv: Vec<Vec<u8>> = ["ssh", "-p", &port.to_string(), host, "nc"]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect();
        match socket {
            Some(path) => argv.extend([b"-U".to_vec(), path.clone()]),
            None => argv.extend([b"localhost".to_vec(), DEFAULT_PORT.to_string().into_bytes()]),
        }
        Some(argv)
    }
}

/// A URI checked against the handle's URI policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NbdUri {
    pub target: Target,
    pub export_name: Vec<u8>,
    pub username: Option<Vec<u8>>,
    /// The TLS settings the URI asks for.
    pub tls: UriTls,
}

/// What a URI says about TLS: the scheme and the `tls-*` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UriTls {
    /// An `nbds` scheme: TLS is required.
    pub require: bool,
    pub certificates: Option<Vec<u8>>,
    pub psk_file: Option<Vec<u8>>,
    pub hostname: Option<Vec<u8>>,
    pub verify_peer: Option<bool>,
}

/// A URI boolean: libnbd's spellings of true and false (in any case).
fn parse_bool(name: &str, value: &[u8]) -> Result<bool> {
    match value.to_ascii_lowercase().as_slice() {
        b"1" | b"true" | b"t" | b"yes" | b"y" | b"on" => Ok(true),
        b"0" | b"false" | b"f" | b"no" | b"n" | b"off" => Ok(false),
        _ => Err(einval(format!(
            "could not parse {name} parameter, expecting {name}=true|false"
        ))),
    }
}

/// The URI policy settings of a handle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub allow_transports: u32,
    pub allow_tls: i32,
    pub allow_local_file: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Unix,
    Vsock,
    Ssh,
}

/// The schemes libnbd knows: name, transport, TLS.
const SCHEMES: &[(&str, Kind, bool)] = &[
    ("nbd", Kind::Tcp, false),
    ("nbds", Kind::Tcp, true),
    ("nbd+unix", Kind::Unix, false),
    ("nbds+unix", Kind::Unix, true),
    ("nbd+vsock", Kind::Vsock, false),
    ("nbds+vsock", Kind::Vsock, true),
    ("nbd+ssh", Kind::Ssh, false),
    ("nbds+ssh", Kind::Ssh, true),
];

fn einval(message: String) -> Error {
    Error::new(libc::EINVAL, message)
}

/// An RFC 3986 URI reference cut into the parts `nbd_connect_uri` uses,
/// each as written (still percent-encoded).
#[derive(Debug, Default, PartialEq, Eq)]
struct Parts<'a> {
    /// The scheme in the case written; `None` for a relative reference.
    scheme: Option<&'a [u8]>,
    /// What comes before `@` in the authority: user name and password.
    userinfo: Option<&'a [u8]>,
    /// The host, an IP literal with its brackets; `None` when there is no
    /// authority or its host is empty.
    host: Option<&'a [u8]>,
    /// The port, at most `i32::MAX`. Like libnbd's parser (libxml2), a
    /// port after an empty host is dropped.
    port: Option<u32>,
    path: &'a [u8],
    query: Option<&'a [u8]>,
}

/// RFC 3986 `unreserved` characters.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `sub-delims`.
fn is_sub_delim(c: u8) -> bool {
    matches!(
        c,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// Where the run starting at `s[at]` of unreserved characters,
/// sub-delimiters, `%XX` escapes and characters `more` accepts ends.
fn scan(s: &[u8], mut at: usize, more: fn(u8) -> bool) -> usize {
    while let Some(&c) = s.get(at) {
        if c == b'%' {
            match s.get(at + 1..at + 3) {
                Some([hi, lo]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => at += 3,
                _ => break,
            }
        } else if is_unreserved(c) || is_sub_delim(c) || more(c) {
            at += 1;
        } else {
            break;
        }
    }
    at
}

/// What a path segment allows besides unreserved, sub-delims and escapes.
fn pchar_more(c: u8) -> bool {
    matches!(c, b':' | b'@')
}

/// The same in the first segment of a relative path, where `:` would
/// make it a scheme.
fn noscheme_more(c: u8) -> bool {
    c == b'@'
}

fn userinfo_more(c: u8) -> bool {
    c == b':'
}

fn nothing_more(_: u8) -> bool {
    false
}

fn query_more(c: u8) -> bool {
    matches!(c, b':' | b'@' | b'/' | b'?')
}

/// A fragment also takes brackets, as libnbd's parser accepts them there.
fn fragment_more(c: u8) -> bool {
    query_more(c) || matches!(c, b'[' | b']')
}

/// The length of the scheme at the start of `s` (a letter, then letters,
/// digits, `+`, `-` or `.`, then `:`).
fn scheme_len(s: &[u8]) -> Option<usize> {
    if !s.first()?.is_ascii_alphabetic() {
        return None;
    }
    let n = s
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))?;
    (s[n] == b':').then_some(n)
}

/// The decimal port starting at `s[at]` and where it ends: at least one
/// digit, at most `i32::MAX`.
fn port_at(s: &[u8], at: usize) -> Option<(u32, usize)> {
    let digits = s[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut port: u64 = 0;
    for &d in &s[at..at + digits] {
        port = port * 10 + u64::from(d - b'0');
        if port > i32::MAX as u64 {
            return None;
        }
    }
    Some((port as u32, at + digits))
}

/// Cuts `s` into its parts as an RFC 3986 URI, or else a relative
/// reference; `None` if it is neither. Nothing is normalised: no case
/// folding of the host, no removal of `.` or `..` segments, and
/// characters RFC 3986 does not allow (space, `|`, non-ASCII...) are
/// refused, not escaped.
fn split(s: &[u8]) -> Option<Parts<'_>> {
    let mut parts = Parts::default();
    let mut at = 0;
    if let Some(n) = scheme_len(s) {
        parts.scheme = Some(&s[..n]);
        at = n + 1;
    }
    let path_start;
    if s[at..].starts_with(b"//") {
        at += 2;
        let end = scan(s, at, userinfo_more);
        if s.get(end) == Some(&b'@') {
            parts.userinfo = Some(&s[at..end]);
            at = end + 1;
        }
        // An IP literal is whatever lies between the brackets.
        let host_end = if s.get(at) == Some(&b'[') {
            at + s[at..].iter().position(|&c| c == b']')? + 1
        } else {
            scan(s, at, nothing_more)
        };
        parts.host = (host_end > at).then(|| &s[at..host_end]);
        at = host_end;
        if s.get(at) == Some(&b':') {
            let (port, end) = port_at(s, at + 1)?;
            parts.port = parts.host.and(Some(port));
            at = end;
        }
        path_start = at;
    } else {
        path_start = at;
        let first = if parts.scheme.is_some() {
            pchar_more
        } else {
            noscheme_more
        };
        at = scan(s, at, first);
    }
    while s.get(at) == Some(&b'/') {
        at = scan(s, at + 1, pchar_more);
    }
    parts.path = &s[path_start..at];
    if s.get(at) == Some(&b'?') {
        let end = scan(s, at + 1, query_more);
        parts.query = Some(&s[at + 1..end]);
        at = end;
    }
    // The fragment means nothing to NBD: checked, then ignored.
    if s.get(at) == Some(&b'#') {
        at = scan(s, at + 1, fragment_more);
    }
    (at == s.len()).then_some(parts)
}

/// Percent-decodes `s` (which [`split`] has checked).
fn decode(s: &[u8]) -> Vec<u8> {
    percent_decode(s).collect()
}

/// Splits a raw query into decoded `(name, value)` pairs the way libnbd
/// does: sections end at the next `&` (or, when there is none, the next
/// `;`); an empty section or one starting with `=` is skipped; `name`
/// alone has the value `""`.
fn parse_query(query: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = query;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&c| c == b'&')
            .or_else(|| rest.iter().position(|&c| c == b';'))
            .unwrap_or(rest.len());
        let section = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        if section.is_empty() || section[0] == b'=' {
            continue;
        }
        let (name, value) = match section.iter().position(|&c| c == b'=') {
            Some(eq) => (&section[..eq], &section[eq + 1..]),
            None => (section, &[][..]),
        };
        out.push((decode(name), decode(value)));
    }
    out
}

/// The error for a string that has no scheme, with a hint when it looks
/// like a socket path or a host name.
fn no_scheme_error(raw: &[u8], policy: &Policy) -> Error {
    let hint = if raw.first() == Some(&b'/')
        && policy.allow_transports & LIBNBD_ALLOW_TRANSPORT_UNIX != 0
    {
        ": to open a local socket use \"nbd+unix://?socket=PATH\""
    } else if raw.len() >= 9
        && raw[..9].eq_ignore_ascii_case(b"localhost")
        && policy.allow_transports & LIBNBD_ALLOW_TRANSPORT_TCP != 0
    {
        ": to open a local port use \"nbd://localhost\" or \"nbd://localhost:PORT\""
    } else {
        ""
    };
    einval(format!(
        "NBD URI does not have a scheme: valid NBD URIs should start with a scheme \
         like nbd://, nbds:// or nbd+unix://{hint}"
    ))
}

/// Parses `raw` as an NBD URI and checks it against `policy`.
pub(crate) fn parse(raw: &[u8], policy: &Policy) -> Result<NbdUri> {
    let unparsable = || {
        einval(format!(
            "unable to parse URI: {}",
            String::from_utf8_lossy(raw)
        ))
    };
    let parts = split(raw).ok_or_else(unparsable)?;
    let Some(scheme) = parts.scheme else {
        return Err(no_scheme_error(raw, policy));
    };
    // A scheme is ASCII.
    let scheme = std::str::from_utf8(scheme).map_err(|_| unparsable())?;
    let (kind, tls) = lookup_scheme(raw, scheme)?;
    check_policy(kind, tls, scheme, policy)?;

    let queries = parts.query.map(parse_query).unwrap_or_default();
    let socket = socket_param(&queries, kind, tls, scheme)?;
    let uri_tls = tls_params(&queries, tls, policy)?;

    // The whole user info, a password too, is the TLS user name, as in
    // libnbd; an empty one is none.
    let username = parts.userinfo.filter(|u| !u.is_empty()).map(decode);
    let export_name = export_name(parts.path).ok_or_else(unparsable)?;
    let host = match parts.host {
        Some(h) => Some(String::from_utf8(decode(h)).map_err(|_| unparsable())?),
        None => None,
    };
    Ok(NbdUri {
        target: target(kind, host, parts.port, socket)?,
        export_name,
        username,
        tls: uri_tls,
    })
}

/// The transport and TLS of a known scheme (in any case, as RFC 3986
/// says), which must be followed by `//`.
fn lookup_scheme(raw: &[u8], scheme: &str) -> Result<(Kind, bool)> {
    let Some(&(_, kind, tls)) = SCHEMES
        .iter()
        .find(|(name, _, _)| name.eq_ignore_ascii_case(scheme))
    else {
        return Err(einval(format!("unknown NBD URI scheme: {scheme}")));
    };
    if !raw[scheme.len()..].starts_with(b"://") {
        return Err(einval(format!("URI must begin with '{scheme}://'")));
    }
    Ok((kind, tls))
}

/// Whether the handle's policy permits the scheme's transport and TLS.
fn check_policy(kind: Kind, tls: bool, scheme: &str, policy: &Policy) -> Result<()> {
    let allowed = match kind {
        Kind::Tcp => LIBNBD_ALLOW_TRANSPORT_TCP,
        Kind::Unix => LIBNBD_ALLOW_TRANSPORT_UNIX,
        Kind::Vsock => LIBNBD_ALLOW_TRANSPORT_VSOCK,
        Kind::Ssh => LIBNBD_ALLOW_TRANSPORT_SSH,
    };
    if policy.allow_transports & allowed == 0 {
        return Err(Error::new(
            libc::EPERM,
            format!("URI transport {scheme} is not permitted"),
        ));
    }
    if (tls && policy.allow_tls == LIBNBD_TLS_DISABLE)
        || (!tls && policy.allow_tls == LIBNBD_TLS_REQUIRE)
    {
        return Err(Error::new(
            libc::EPERM,
            format!("URI TLS setting {scheme} is not permitted"),
        ));
    }
    Ok(())
}

/// The last `socket` parameter: required for Unix sockets, optional
/// through ssh, else refused.
fn socket_param(
    queries: &[(Vec<u8>, Vec<u8>)],
    kind: Kind,
    tls: bool,
    scheme: &str,
) -> Result<Option<Vec<u8>>> {
    let socket = queries
        .iter()
        .rev()
        .find(|(name, _)| name.eq_ignore_ascii_case(b"socket"))
        .map(|(_, value)| value.clone());
    if kind == Kind::Unix && socket.is_none() {
        return Err(einval(format!(
            "cannot parse socket parameter from NBD URI \
             (did you mean to use \"{scheme}:///?socket=...\"?)"
        )));
    }
    if kind != Kind::Unix && kind != Kind::Ssh && socket.is_some() {
        let base = if tls { "nbds" } else { "nbd" };
        return Err(einval(format!(
            "socket parameter is incompatible with \"{scheme}:\" \
             (did you mean to use \"{base}+unix:///?socket=...\"?)"
        )));
    }
    Ok(socket)
}

/// The `tls-*` parameters (local files only if the policy allows them);
/// other parameters are ignored, as libnbd ignores them.
fn tls_params(queries: &[(Vec<u8>, Vec<u8>)], require: bool, policy: &Policy) -> Result<UriTls> {
    let mut uri_tls = UriTls {
        require,
        ..UriTls::default()
    };
    for (name, value) in queries {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        if (name == "tls-certificates" || name == "tls-psk-file") && !policy.allow_local_file {
            return Err(Error::new(
                libc::EPERM,
                format!(
                    "local file access ({name}) is not allowed, \
                     call nbd_set_uri_allow_local_file to enable this"
                ),
            ));
        }
        match &*name {
            "tls-certificates" => uri_tls.certificates = Some(value.clone()),
            "tls-psk-file" => uri_tls.psk_file = Some(value.clone()),
            "tls-hostname" => uri_tls.hostname = Some(value.clone()),
            "tls-verify-peer" => uri_tls.verify_peer = Some(parse_bool(&name, value)?),
            _ => {}
        }
    }
    Ok(uri_tls)
}

/// The export name: the decoded path without its first `/` (no NUL).
fn export_name(path: &[u8]) -> Option<Vec<u8>> {
    let path = decode(path);
    let name = path.strip_prefix(b"/").unwrap_or(&path).to_vec();
    (!name.contains(&0)).then_some(name)
}

/// `host` without the brackets of an IP literal.
fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A port that is there and not 0, or else `default` (as libnbd, which
/// takes port 0 for none).
fn port_or(port: Option<u32>, default: u16) -> u32 {
    port.filter(|&p| p > 0).unwrap_or(u32::from(default))
}

/// Where to connect, from the transport, the decoded host (IP literals
/// still in brackets; `None` for none), port and socket.
fn target(
    kind: Kind,
    host: Option<String>,
    port: Option<u32>,
    socket: Option<Vec<u8>>,
) -> Result<Target> {
    Ok(match kind {
        Kind::Tcp => Target::Tcp {
            host: host
                .as_deref()
                .map_or("localhost", strip_brackets)
                .to_string(),
            port: port_or(port, DEFAULT_PORT).to_string(),
        },
        Kind::Unix => Target::Unix {
            path: socket.unwrap_or_default(),
        },
        Kind::Vsock => Target::Vsock {
            cid: vsock_cid(host.as_deref().unwrap_or(""))?,
            port: port_or(port, DEFAULT_PORT),
        },
        Kind::Ssh => {
            // Unlike libnbd 1.22, which hands ssh "[::1]", an IP literal
            // loses its brackets: ssh takes the bare address.
            let host = host.as_deref().map_or("", strip_brackets);
            if host.is_empty() {
                return Err(einval("SSH transport requires a server name".into()));
            }
            Target::Ssh {
                host: host.to_string(),
                port: port_or(port, SSH_PORT),
                socket,
            }
        }
    })
}

/// A vsock URI's host is the CID, read the way sscanf("%u") reads it in
/// libnbd: leading white space, a sign, decimal digits up to the first
/// other character; too large saturates, a minus sign negates, and the
/// result keeps its low 32 bits. No host is the host's CID.
fn vsock_cid(host: &str) -> Result<u32> {
    if host.is_empty() {
        return Ok(VSOCK_HOST_CID);
    }
    let s = host.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(einval(format!(
            "cannot parse vsock CID from NBD URI: {host}"
        )));
    }
    let value = s[..digits].bytes().try_fold(0u64, |v, d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    let value = match value {
        Some(v) if negative => v.wrapping_neg(),
        Some(v) => v,
        None => u64::MAX,
    };
    // Truncation to 32 bits is what the C conversion does.
    Ok(value as u32)
}

/// Whether `s` could be an NBD URI: it starts with an NBD scheme (in any
/// case) and `://`.
pub(crate) fn is_uri(s: &[u8]) -> bool {
    SCHEMES.iter().any(|(name, _, _)| {
        s.len() >= name.len() + 3
            && s[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && &s[name.len()..name.len() + 3] == b"://"
    })
}

/// Characters escaped in a URI path (everything but RFC 3986 unreserved
/// characters, sub-delimiters, `:`, `@` and `/`).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');
/// Characters escaped in user info: as a path, plus `/` and `@` (a `:`
/// stays, as libnbd writes it: the whole user info is the user name).
const USERINFO: &AsciiSet = &PATH.add(b'/').add(b'@');
/// Characters escaped in a query value: as a path, plus the separators
/// of sections (`=` needs none: a section splits at its first `=`).
const QUERY_VALUE: &AsciiSet = &PATH.add(b'&').add(b';');

fn encode(bytes: &[u8], set: &'static AsciiSet) -> String {
    // Non-UTF-8 bytes are escaped byte by byte.
    match std::str::from_utf8(bytes) {
        Ok(s) => utf8_percent_encode(s, set).to_string(),
        Err(_) => percent_encoding::percent_encode(bytes, set).to_string(),
    }
}

/// What a handle knows about its connection, for [`build`].
pub(crate) struct Connection<'a> {
    pub hostname: Option<&'a str>,
    pub port: Option<&'a str>,
    pub connaddr: Option<&'a SockAddr>,
    /// The [`Target::Ssh`] tunnel connected through.
    pub ssh: Option<&'a Target>,
    pub export_name: &'a [u8],
    pub username: Option<&'a [u8]>,
    /// TLS is required or was negotiated: an `nbds` scheme.
    pub tls: bool,
    pub tls_certificates: Option<&'a [u8]>,
    pub tls_psk_file: Option<&'a [u8]>,
    /// `nbd_set_tls_hostname`'s name, if one was set.
    pub tls_hostname: Option<&'a [u8]>,
    /// Whether the server's certificate is checked (`tls-verify-peer=false` if not).
    pub tls_verify_peer: bool,
}

/// `host:port` for a URI's authority, an IPv6 address in brackets.
fn server_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{}:{port}", encode(host.as_bytes(), PATH))
    }
}

/// Builds the URI that would connect back to the same server and export.
pub(crate) fn build(conn: &Connection<'_>) -> Result<String> {
    let (scheme, server, socket) = where_connected(conn)?;
    let mut uri = match (conn.tls, scheme.strip_prefix("nbd")) {
        (true, Some(rest)) => format!("nbds{rest}://"),
        _ => format!("{scheme}://"),
    };
    if let Some(user) = conn.username {
        uri.push_str(&encode(user, USERINFO));
        uri.push('@');
    }
    uri.push_str(&server);
    uri.push('/');
    uri.push_str(&encode(conn.export_name, PATH));
    let params = [
        ("socket", socket.as_deref()),
        ("tls-certificates", conn.tls_certificates),
        ("tls-psk-file", conn.tls_psk_file),
        ("tls-hostname", conn.tls_hostname),
        (
            "tls-verify-peer",
            (!conn.tls_verify_peer).then_some(&b"false"[..]),
        ),
    ];
    let mut sep = '?';
    for (name, value) in params {
        if let Some(value) = value {
            uri.push(sep);
            uri.push_str(name);
            uri.push('=');
            uri.push_str(&encode(value, QUERY_VALUE));
            sep = '&';
        }
    }
    Ok(uri)
}

/// The scheme (without TLS), authority and socket parameter that name
/// where the handle connected: the ssh tunnel, the host and port asked
/// for, or the address connected to.
fn where_connected(conn: &Connection<'_>) -> Result<(&'static str, String, Option<Vec<u8>>)> {
    if let Some(Target::Ssh { host, port, socket }) = conn.ssh {
        return Ok((
            "nbd+ssh",
            server_port(host, &port.to_string()),
            socket.clone(),
        ));
    }
    if let (Some(host), Some(port)) = (conn.hostname, conn.port) {
        return Ok(("nbd", server_port(host, port), None));
    }
    let Some(addr) = conn.connaddr else {
        return Err(einval(
            "cannot construct a URI for this connection type".to_string(),
        ));
    };
    if let Some(ip) = addr.inet_addr() {
        Ok(("nbd", ip.to_string(), None))
    } else if let Some(path) = addr.unix_path() {
        let path = path.map_err(|()| {
            Error::new(
                libc::EPROTONOSUPPORT,
                "Unix domain sockets in the abstract namespace are not yet supported",
            )
        })?;
        Ok(("nbd+unix", String::new(), Some(path.to_vec())))
    } else if let Some((cid, port)) = addr.vsock_addr() {
        Ok(("nbd+vsock", format!("{cid}:{port}"), None))
    } else {
        Err(Error::new(
            libc::EAFNOSUPPORT,
            format!("address family {} not supported", addr.family()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::raw::{LIBNBD_ALLOW_TRANSPORT_MASK, LIBNBD_TLS_ALLOW};

    const ANY: Policy = Policy {
        allow_transports: LIBNBD_ALLOW_TRANSPORT_MASK,
        allow_tls: LIBNBD_TLS_ALLOW,
        allow_local_file: false,
    };

    fn ok(s: &str) -> NbdUri {
        parse(s.as_bytes(), &ANY).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> Error {
        parse(s.as_bytes(), &ANY).expect_err(s)
    }

    #[test]
    fn schemes_and_parts() {
        let u = ok("nbd+unix:///exp%20ort?socket=/tmp/a%20b");
        assert_eq!(
            u.target,
            Target::Unix {
                path: b"/tmp/a b".to_vec()
            }
        );
        assert_eq!(u.export_name, b"exp ort");
        let u = ok("nbd://[::1]:1234/x");
        assert_eq!(
            u.target,
            Target::Tcp {
                host: "::1".into(),
                port: "1234".into()
            }
        );
        let u = ok("nbd://");
        assert_eq!(
            u.target,
            Target::Tcp {
                host: "localhost".into(),
                port: "10809".into()
            }
        );
        assert_eq!(u.export_name, b"");
        let u = ok("nbd+vsock://3:99/e");
        assert_eq!(u.target, Target::Vsock { cid: 3, port: 99 });
        let u = ok("nbd+vsock:///");
        assert_eq!(
            u.target,
            Target::Vsock {
                cid: 2,
                port: 10809
            }
        );
        let u = ok("nbd://us%40er@h//double");
        assert_eq!(u.username.as_deref(), Some(&b"us@er"[..]));
        assert_eq!(u.export_name, b"/double");
    }

    #[test]
    fn ssh_targets_and_commands() {
        let u = ok("nbd+ssh://alice@server.example:2222/exp?socket=/run/nbd.sock");
        assert_eq!(
            u.target,
            Target::Ssh {
                host: "server.example".into(),
                port: 2222,
                socket: Some(b"/run/nbd.sock".to_vec())
            }
        );
        // The user name is for TLS; ssh gets the host and port only.
        assert_eq!(u.username.as_deref(), Some(&b"alice"[..]));
        let argv = u.target.ssh_command().unwrap();
        assert_eq!(
            argv,
            [
                "ssh",
                "-p",
                "2222",
                "server.example",
                "nc",
                "-U",
                "/run/nbd.sock"
            ]
            .map(|a| a.as_bytes().to_vec())
        );
        let u = ok("nbds+ssh://h/");
        assert!(u.tls.require);
        assert_eq!(
            u.target.ssh_command().unwrap(),
            ["ssh", "-p", "22", "h", "nc", "localhost", "10809"].map(|a| a.as_bytes().to_vec())
        );
        assert_eq!(ok("nbd://h/").target.ssh_command(), None);
        let e = err("nbd+ssh:///?socket=/s");
        assert_eq!(e.errno(), libc::EINVAL);
        assert_eq!(e.message(), "SSH transport requires a server name");
        let no_ssh = Policy {
            allow_transports: LIBNBD_ALLOW_TRANSPORT_MASK & !LIBNBD_ALLOW_TRANSPORT_SSH,
            ..ANY
        };
        let e = parse(b"nbd+ssh://h/", &no_ssh).unwrap_err();
        assert_eq!(e.errno(), libc::EPERM);
        assert_eq!(e.message(), "URI transport nbd+ssh is not permitted");
        assert!(is_uri(b"nbd+ssh://h/") && is_uri(b"nbds+ssh://h/"));
    }

    #[test]
    fn ssh_round_trip() {
        for raw in [
            "nbd+ssh://h.example:22/e?socket=/s",
            "nbd+ssh://[::1]:2222/",
        ] {
            let u = ok(raw);
            let c = Connection {
                ssh: Some(&u.target),
                hostname: None,
                port: None,
                connaddr: None,
                export_name: &u.export_name,
                username: None,
                tls: false,
                tls_certificates: None,
                tls_psk_file: None,
                tls_hostname: None,
                tls_verify_peer: true,
            };
            assert_eq!(build(&c).unwrap(), raw);
        }
    }

    #[test]
    fn bad_input() {
        assert!(err("foo://x")
            .message()
            .starts_with("unknown NBD URI scheme: foo"));
        // Schemes are case-insensitive (libnbd 1.22 agrees).
        assert!(matches!(ok("NBD://x").target, Target::Tcp { .. }));
        assert_eq!(err("nbd:x").message(), "URI must begin with 'nbd://'");
        assert!(err("/tmp/s").message().contains("nbd+unix://?socket=PATH"));
        assert!(err("nbd://[::1")
            .message()
            .starts_with("unable to parse URI"));
        assert!(err("nbd:///%zz")
            .message()
            .starts_with("unable to parse URI"));
        assert!(err("nbd:///?a=%zz")
            .message()
            .starts_with("unable to parse URI: "));
        assert_eq!(err("nbd://h/?tls-certificates=/x").errno(), libc::EPERM);
        assert_eq!(err("nbds://h/?tls-psk-file=/x").errno(), libc::EPERM);
        assert_eq!(err("nbds://h/?tls-verify-peer=maybe").errno(), libc::EINVAL);
    }

    #[test]
    fn tls_parameters() {
        let u = ok(concat!(
            "nbds+unix://alice@/e?socket=/s&tls-username=bob&tls-hostname=h.example",
            "&tls-verify-peer=false&tls-other=1"
        ));
        assert!(u.tls.require);
        // The user name comes from the authority; libnbd 1.22 knows no
        // tls-username parameter (it is ignored like tls-other).
        assert_eq!(u.username.as_deref(), Some(&b"alice"[..]));
        assert_eq!(u.tls.hostname.as_deref(), Some(&b"h.example"[..]));
        assert_eq!(u.tls.verify_peer, Some(false));
        assert!(!ok("nbd://h/").tls.require);
        let local = Policy {
            allow_local_file: true,
            ..ANY
        };
        let u = parse(b"nbds://h/?tls-certificates=/c&tls-psk-file=/k", &local).unwrap();
        assert_eq!(u.tls.certificates.as_deref(), Some(&b"/c"[..]));
        assert_eq!(u.tls.psk_file.as_deref(), Some(&b"/k"[..]));
    }

    #[test]
    fn query_sections() {
        let q = parse_query(b"a=1&&=x&b&c=%41");
        assert_eq!(
            q,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"".to_vec()),
                (b"c".to_vec(), b"A".to_vec())
            ]
        );
    }

    #[test]
    fn is_uri_heuristic() {
        assert!(is_uri(b"nbd://x"));
        assert!(is_uri(b"nbds+unix://"));
        // As libnbd 1.22: the scheme in any case, and "://" after it.
        assert!(is_uri(b"NBD+Unix:///?socket=/s"));
        assert!(!is_uri(b"nbds+unix:"));
        assert!(!is_uri(b"NBD:"));
        assert!(!is_uri(b"/tmp/file"));
        assert!(!is_uri(b"nbdfoo://"));
    }

    #[test]
    fn build_round_trip() {
        let addr = SockAddr::unix(b"/tmp/s o").unwrap();
        let c = Connection {
            ssh: None,
            hostname: None,
            port: None,
            connaddr: Some(&addr),
            export_name: b"a b/c",
            username: None,
            tls: false,
            tls_certificates: None,
            tls_psk_file: None,
            tls_hostname: None,
            tls_verify_peer: true,
        };
        let s = build(&c).unwrap();
        assert_eq!(s, "nbd+unix:///a%20b/c?socket=/tmp/s%20o");
        let back = ok(&s);
        assert_eq!(back.export_name, b"a b/c");
        assert_eq!(
            back.target,
            Target::Unix {
                path: b"/tmp/s o".to_vec()
            }
        );
        let c = Connection {
            ssh: None,
            hostname: Some("::1"),
            port: Some("10809"),
            connaddr: None,
            export_name: b"",
            username: None,
            tls: false,
            tls_certificates: None,
            tls_psk_file: None,
            tls_hostname: None,
            tls_verify_peer: true,
        };
        assert_eq!(build(&c).unwrap(), "nbd://[::1]:10809/");
        let c = Connection {
            ssh: None,
            hostname: None,
            port: None,
            connaddr: Some(&addr),
            export_name: b"e",
            username: Some(b"alice"),
            tls: true,
            tls_certificates: None,
            tls_psk_file: Some(b"/k.psk"),
            tls_hostname: None,
            tls_verify_peer: true,
        };
        let s = build(&c).unwrap();
        assert_eq!(
            s,
            "nbds+unix://alice@/e?socket=/tmp/s%20o&tls-psk-file=/k.psk"
        );
        let local = Policy {
            allow_local_file: true,
            ..ANY
        };
        let back = parse(s.as_bytes(), &local).unwrap();
        assert!(back.tls.require);
        assert_eq!(back.tls.psk_file.as_deref(), Some(&b"/k.psk"[..]));
        assert_eq!(back.username.as_deref(), Some(&b"alice"[..]));
        // As libnbd writes them: `:` in the user name and `=` in a
        // query value stay, and read back the same.
        let c = Connection {
            username: Some(b"al:ice"),
            tls_hostname: Some(b"a=b"),
            ..c
        };
        let s = build(&c).unwrap();
        assert_eq!(
            s,
            "nbds+unix://al:ice@/e?socket=/tmp/s%20o&tls-psk-file=/k.psk&tls-hostname=a=b"
        );
        let back = parse(s.as_bytes(), &local).unwrap();
        assert_eq!(back.username.as_deref(), Some(&b"al:ice"[..]));
        assert_eq!(back.tls.hostname.as_deref(), Some(&b"a=b"[..]));
    }

    #[test]
    fn each_step_and_its_error() {
        let msg = |s: &str, p: &Policy| {
            let e = parse(s.as_bytes(), p).unwrap_err();
            (e.errno(), e.message().to_string())
        };
        // Policy: transport, then TLS.
        let tcp_only = Policy {
            allow_transports: LIBNBD_ALLOW_TRANSPORT_TCP,
            ..ANY
        };
        assert_eq!(
            msg("nbd+unix:///?socket=/s", &tcp_only),
            (
                libc::EPERM,
                "URI transport nbd+unix is not permitted".into()
            )
        );
        let no_tls = Policy {
            allow_tls: LIBNBD_TLS_DISABLE,
            ..ANY
        };
        assert_eq!(
            msg("nbds://h/", &no_tls),
            (libc::EPERM, "URI TLS setting nbds is not permitted".into())
        );
        let tls_only = Policy {
            allow_tls: LIBNBD_TLS_REQUIRE,
            ..ANY
        };
        assert_eq!(
            msg("nbd://h/", &tls_only),
            (libc::EPERM, "URI TLS setting nbd is not permitted".into())
        );
        // The socket parameter: required, allowed, refused.
        assert_eq!(
            msg("nbd+unix:///e", &ANY),
            (
                libc::EINVAL,
                "cannot parse socket parameter from NBD URI \
                 (did you mean to use \"nbd+unix:///?socket=...\"?)"
                    .into()
            )
        );
        assert_eq!(
            msg("nbds://h/?socket=/s", &ANY),
            (
                libc::EINVAL,
                "socket parameter is incompatible with \"nbds:\" \
                 (did you mean to use \"nbds+unix:///?socket=...\"?)"
                    .into()
            )
        );
        // The last socket parameter wins.
        assert_eq!(
            ok("nbd+unix:///?socket=/a&SOCKET=/b").target,
            Target::Unix {
                path: b"/b".to_vec()
            }
        );
        // Local files need the policy's permission.
        assert_eq!(
            msg("nbds://h/?tls-psk-file=/k", &ANY),
            (
                libc::EPERM,
                "local file access (tls-psk-file) is not allowed, \
                 call nbd_set_uri_allow_local_file to enable this"
                    .into()
            )
        );
        assert_eq!(
            msg("nbds://h/?tls-verify-peer=maybe", &ANY),
            (
                libc::EINVAL,
                "could not parse tls-verify-peer parameter, \
                 expecting tls-verify-peer=true|false"
                    .into()
            )
        );
        // An export name with a NUL, a host that is not UTF-8.
        assert_eq!(
            msg("nbd://h/a%00b", &ANY),
            (libc::EINVAL, "unable to parse URI: nbd://h/a%00b".into())
        );
        assert_eq!(msg("nbd://%ff/", &ANY).0, libc::EINVAL);
    }

    #[test]
    fn vsock_cids() {
        assert_eq!(vsock_cid("").unwrap(), VSOCK_HOST_CID);
        assert_eq!(vsock_cid("42").unwrap(), 42);
        // Leading digits, as sscanf reads them.
        assert_eq!(vsock_cid("7abc").unwrap(), 7);
        let e = vsock_cid("abc").unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert_eq!(e.message(), "cannot parse vsock CID from NBD URI: abc");
        // As sscanf("%u") reads them: white space and a sign first; too
        // large saturates; the low 32 bits are kept.
        assert_eq!(vsock_cid(" \t+7x").unwrap(), 7);
        assert_eq!(vsock_cid("-1").unwrap(), u32::MAX);
        assert_eq!(vsock_cid("4294967298").unwrap(), 2);
        assert_eq!(vsock_cid("99999999999").unwrap(), 1_215_752_191);
        assert_eq!(vsock_cid("99999999999999999999999").unwrap(), u32::MAX);
        assert!(vsock_cid("-x").is_err());
        assert!(vsock_cid("[::1]").is_err());
    }

    #[test]
    fn no_scheme_hints() {
        let hint = |s: &str| err(s).message().to_string();
        let base = "NBD URI does not have a scheme: valid NBD URIs should start with a \
                    scheme like nbd://, nbds:// or nbd+unix://";
        assert_eq!(hint("1234"), base);
        assert_eq!(
            hint("/tmp/sock"),
            format!("{base}: to open a local socket use \"nbd+unix://?socket=PATH\"")
        );
        assert_eq!(
            hint("LOCALHOST"),
            format!(
                "{base}: to open a local port use \"nbd://localhost\" or \
                 \"nbd://localhost:PORT\""
            )
        );
    }

    #[test]
    fn uri_of_an_unknown_connection() {
        let c = Connection {
            ssh: None,
            hostname: Some("h"),
            port: None,
            connaddr: None,
            export_name: b"",
            username: None,
            tls: false,
            tls_certificates: None,
            tls_psk_file: None,
            tls_hostname: None,
            tls_verify_peer: false,
        };
        let e = build(&c).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert_eq!(
            e.message(),
            "cannot construct a URI for this connection type"
        );
    }

    /// The error for a URI RFC 3986 (as libnbd reads it) refuses.
    fn unparsable(s: &str) {
        let e = parse(s.as_bytes(), &ANY).expect_err(s);
        assert_eq!(e.errno(), libc::EINVAL, "{s}");
        assert_eq!(e.message(), format!("unable to parse URI: {s}"), "{s}");
    }

    fn tcp(s: &str) -> (String, String) {
        match ok(s).target {
            Target::Tcp { host, port } => (host, port),
            t => panic!("{s}: {t:?}"),
        }
    }

    #[test]
    fn split_into_parts() {
        let p = split(b"NBD+Unix://u%40s:pw@[::1]:0123/a%2Fb/?q=1&r#f").unwrap();
        assert_eq!(
            p,
            Parts {
                scheme: Some(b"NBD+Unix"),
                userinfo: Some(b"u%40s:pw"),
                host: Some(b"[::1]"),
                port: Some(123),
                path: b"/a%2Fb/",
                query: Some(b"q=1&r"),
            }
        );
        // No authority, an empty one, an empty host with a port.
        let p = split(b"nbd:e").unwrap();
        assert_eq!((p.host, p.path), (None, &b"e"[..]));
        let p = split(b"nbd:///e?").unwrap();
        assert_eq!(
            (p.host, p.path, p.query),
            (None, &b"/e"[..], Some(&b""[..]))
        );
        let p = split(b"nbd://alice@:99/").unwrap();
        assert_eq!(
            (p.userinfo, p.host, p.port),
            (Some(&b"alice"[..]), None, None)
        );
        // Relative references.
        assert_eq!(split(b"//h/e").unwrap().scheme, None);
        assert_eq!(split(b"").unwrap(), Parts::default());
        assert!(split(b"1abc:x").is_none());
    }

    #[test]
    fn what_rfc3986_refuses() {
        for s in [
            "nbd://[::1",
            "nbd://[::1]x/",
            "nbd://::1/",
            "nbd://h:/e",
            "nbd://h:12a/e",
            "nbd://h:-1/e",
            "nbd://h:+1/e",
            "nbd://h:1:2/e",
            "nbd://h:2147483648/e",
            "nbd://h:4294967296/e",
            "nbd://h:4294977105/e",
            "nbd://h:9999999999/e",
            "nbd://h:99999999999999999999/e",
            "nbd://a@b@h/",
            "nbd://us er@h/",
            "nbd://user%zz@h/",
            "nbd://h/%zz",
            "nbd://h/e%2",
            "nbd://h/a b",
            "nbd://h/a|b",
            "nbd://h/a\\b",
            "nbd://h/a[b",
            "nbd://h/\u{e9}",
            "nbd://h/a\tb",
            " nbd://h/e",
            "nbd://h/e ",
            "nbd://h/e?a=%zz",
            "nbd://h/e?a b",
            "nbd://h/e?a=[b]",
            "nbd://h/e?tls-hostname=%",
            "nbd://h/e#fr#ag",
            "nbd://h/e#a b",
            "nbd://%5B::1%5D:10/",
            "1abc:x",
            "a:b c",
            "/tmp/a b",
        ] {
            unparsable(s);
        }
        // Bytes that are not UTF-8 are refused too.
        let e = parse(b"nbd://h/\xff", &ANY).unwrap_err();
        assert_eq!(e.message(), "unable to parse URI: nbd://h/\u{fffd}");
    }

    #[test]
    fn ports() {
        assert_eq!(tcp("nbd://h:99/").1, "99");
        assert_eq!(tcp("nbd://h:0099/").1, "99");
        // Port 0 is no port.
        assert_eq!(tcp("nbd://h:0/").1, "10809");
        assert_eq!(tcp("nbd://h/").1, "10809");
        // Too large for TCP, but getaddrinfo decides, as in libnbd.
        assert_eq!(tcp("nbd://h:65536/").1, "65536");
        assert_eq!(tcp("nbd://h:2147483647/").1, "2147483647");
        // A port after an empty host is dropped (libnbd's parser).
        assert_eq!(tcp("nbd://:99/e"), ("localhost".into(), "10809".into()));
        let u = ok("nbd+vsock://5:2147483647/");
        assert_eq!(
            u.target,
            Target::Vsock {
                cid: 5,
                port: 2147483647
            }
        );
        assert_eq!(
            ok("nbd+vsock://5:0/").target,
            Target::Vsock {
                cid: 5,
                port: 10809
            }
        );
        // An IP literal reaches ssh without its brackets (libnbd keeps them).
        let u = ok("nbd+ssh://[::1]:2222/");
        assert_eq!(u.target.ssh_command().unwrap()[3], b"::1");
        let u = ok("nbd+ssh://h:70000/");
        assert_eq!(u.target.ssh_command().unwrap()[2], b"70000");
    }

    #[test]
    fn user_info() {
        // The whole user info, password and all, is the user name.
        let u = ok("nbd://alice:secret@h/e");
        assert_eq!(u.username.as_deref(), Some(&b"alice:secret"[..]));
        let u = ok("nbd://a%40b%3Ac@[::1]:5/");
        assert_eq!(u.username.as_deref(), Some(&b"a@b:c"[..]));
        assert_eq!(tcp("nbd://a%40b%3Ac@[::1]:5/"), ("::1".into(), "5".into()));
        // Without a host.
        let u = ok("nbd+unix://alice:pw@/?socket=/s");
        assert_eq!(u.username.as_deref(), Some(&b"alice:pw"[..]));
        // An empty user info is no user name.
        let u = ok("nbd://@h/");
        assert_eq!(u.username, None);
        assert_eq!(tcp("nbd://@h/").0, "h");
    }

    #[test]
    fn hosts_as_written() {
        // Percent-decoded, nothing else: no case folding, no IP address
        // normalisation, IP literals of any content.
        assert_eq!(tcp("nbd://%31%32%37.0.0.1/").0, "127.0.0.1");
        assert_eq!(tcp("nbd://LOCALHOST/").0, "LOCALHOST");
        assert_eq!(tcp("nbd://[::ffff:127.0.0.1]/").0, "::ffff:127.0.0.1");
        assert_eq!(tcp("nbd://[%3A%3A1]/").0, "::1");
        assert_eq!(tcp("nbd://[v1.x]:7/").0, "v1.x");
        assert_eq!(tcp("nbd://[fe80::1%25lo]/").0, "fe80::1%lo");
        assert_eq!(tcp("nbd://[]/").0, "");
        assert_eq!(tcp("nbd://h_x~!$&'()*+,;=/").0, "h_x~!$&'()*+,;=");
        assert_eq!(tcp("nbd:///").0, "localhost");
        // A vsock CID keeps the brackets, in its error too.
        assert_eq!(
            err("nbd+vsock://[::1]/").message(),
            "cannot parse vsock CID from NBD URI: [::1]"
        );
        assert_eq!(
            ok("nbd+vsock://-1/").target,
            Target::Vsock {
                cid: u32::MAX,
                port: 10809
            }
        );
        // A Unix socket URI ignores its host.
        assert_eq!(
            ok("nbd+unix://localhost:99/e?socket=/s").target,
            Target::Unix {
                path: b"/s".to_vec()
            }
        );
    }

    #[test]
    fn paths_queries_fragments() {
        // No dot-segment removal.
        assert_eq!(ok("nbd://h/a/../b/./c").export_name, b"a/../b/./c");
        assert_eq!(ok("nbd://h/%2e%2e/x").export_name, b"../x");
        assert_eq!(ok("nbd://h/a%20b%2Fc%7e").export_name, b"a b/c~");
        assert_eq!(ok("nbd://h/e/?/x").export_name, b"e/");
        assert_eq!(ok("nbd://h").export_name, b"");
        assert_eq!(
            ok("nbd://h?tls-hostname=x").tls.hostname.as_deref(),
            Some(&b"x"[..])
        );
        // Fragments are checked, then ignored.
        let u = ok("nbd://h/e?tls-hostname=x#a?b/c:@[]");
        assert_eq!(u.export_name, b"e");
        assert_eq!(u.tls.hostname.as_deref(), Some(&b"x"[..]));
        assert_eq!(ok("nbd://h/e#").export_name, b"e");
        // Query sections: `&`, else `;`; a value keeps later `=`.
        let h = |s: &str| ok(s).tls.hostname;
        assert_eq!(
            h("nbd://h/?a=b;tls-hostname=g;c=d").as_deref(),
            Some(&b"g"[..])
        );
        assert_eq!(h("nbd://h/?a=b;tls-hostname=g&c=d"), None);
        assert_eq!(h("nbd://h/?tls-hostname=a=b").as_deref(), Some(&b"a=b"[..]));
        assert_eq!(
            h("nbd://h/?tls-hostname=%41%2fb&&=x").as_deref(),
            Some(&b"A/b"[..])
        );
        assert_eq!(h("nbd://h/?tls-hostname").as_deref(), Some(&b""[..]));
        assert_eq!(h("nbd://h/?a=/?:@").as_deref(), None);
    }

    #[test]
    fn booleans() {
        for (v, b) in [
            ("1", true),
            ("T", true),
            ("y", true),
            ("On", true),
            ("N", false),
            ("f", false),
            ("OFF", false),
        ] {
            assert_eq!(
                ok(&format!("nbd://h/?tls-verify-peer={v}")).tls.verify_peer,
                Some(b),
                "{v}"
            );
        }
    }

    #[test]
    fn unparsable_before_no_scheme() {
        let base = "NBD URI does not have a scheme: valid NBD URIs should start with a \
                    scheme like nbd://, nbds:// or nbd+unix://";
        assert_eq!(err("").message(), base);
        assert!(err("//h/e")
            .message()
            .ends_with("\"nbd+unix://?socket=PATH\""));
        assert_eq!(
            err("localhost:10809").message(),
            "unknown NBD URI scheme: localhost"
        );
        assert_eq!(
            err("nbd+unix:?socket=/s").message(),
            "URI must begin with 'nbd+unix://'"
        );
    }

    /// Mutated URIs (bytes inserted, deleted, replaced, repeated, cut)
    /// never make the parser panic, and an export name it accepts has no
    /// NUL. Deterministic: the same inputs on every run.
    #[test]
    fn mutated_uris_never_panic() {
        const SEEDS: &[&str] = &[
            "nbd://alice:pw@[::1]:10809/exp%20ort?tls-hostname=h&x=y#f",
            "nbds+unix:///e?socket=/tmp/s&tls-psk-file=/k&tls-verify-peer=no",
            "nbd+vsock://2:3/e",
            "nbds+ssh://u@host:22/e?socket=/s",
            "nbd://h/%00%ff%2F?a=%3D&&=b;c",
            "nbd+unix://@/?socket=%2Ftmp",
            "NBD://[v1.x]:0/",
        ];
        const SPECIAL: &[u8] = b":/?#[]@%&=;+.-_~!$'()*,09aAfFzZ \t\0\x7f\xff";
        let local = Policy {
            allow_local_file: true,
            ..ANY
        };
        // xorshift64: no dependency, same sequence everywhere.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut accepted = 0;
        for i in 0..60_000 {
            let mut s = SEEDS[i % SEEDS.len()].as_bytes().to_vec();
            for _ in 0..1 + next(4) {
                let at = next(s.len() + 1);
                let byte = if next(3) == 0 {
                    next(256) as u8
                } else {
                    SPECIAL[next(SPECIAL.len())]
                };
                match next(5) {
                    0 => s.insert(at, byte),
                    1 if at < s.len() => {
                        s.remove(at);
                    }
                    2 if at < s.len() => s[at] = byte,
                    3 => {
                        let end = (at + next(8)).min(s.len());
                        let piece = s[at..end].to_vec();
                        s.splice(at..at, piece);
                    }
                    _ => s.truncate(at),
                }
            }
            for policy in [&ANY, &local] {
                let Ok(u) = parse(&s, policy) else { continue };
                accepted += 1;
                let shown = String::from_utf8_lossy(&s);
                assert!(!u.export_name.contains(&0), "{shown}");
            }
        }
        // The mutations must leave many URIs valid, or this tests only
        // the first few bytes of the parser.
        assert!(accepted > 10_000, "only {accepted} accepted");
    }
}
