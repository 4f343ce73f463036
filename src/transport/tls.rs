//! TLS over another transport, with OpenSSL in non-blocking mode.
//!
//! [`TlsTransport`] wraps the transport the handshake began on (after the
//! server accepted `NBD_OPT_STARTTLS`) and is itself a [`Transport`], so the
//! state machine reads and writes through it exactly as through a socket.
//! OpenSSL's "want read" and "want write" become `WouldBlock`; which way
//! the machine should wait is then reported by [`Transport::wants_write`].
//!
//! Large writes are encrypted a record at a time straight from the
//! caller's buffer; small pieces (request headers) are gathered into one
//! bounded, reused buffer first. Once OpenSSL has started a record it must
//! be retried with the same bytes, so a record the socket did not take is
//! copied into that buffer, which we own even if the state machine later
//! changes its queue. Bytes accepted into the buffer count as sent; the
//! machine keeps asking for writability until [`Transport::flush`] has
//! pushed them out.

use std::fmt::Write as _;
use std::io::{self, IoSlice, Read, Write};
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslMode, SslOptions,
    SslStream, SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509Lookup;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509VerifyResult, X509};

use super::Transport;
use crate::{Error, Result};

/// The largest TLS record's plaintext, and the most bytes buffered.
const RECORD: usize = 16 * 1024;

/// How the client authenticates, and what it checks of the server.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsConfig {
    /// `nbd_set_tls_certificates`; `None` searches the default directories.
    pub certificates: Option<PathBuf>,
    /// `nbd_set_tls_psk_file` and the user name to look up in it.
    pub psk: Option<(PathBuf, String)>,
    /// Verify the server's certificate chain (`nbd_set_tls_verify_peer`).
    /// Ignored with a PSK, which authenticates both ends by itself.
    pub verify_peer: bool,
    /// With `verify_peer`, the name the server's certificate must also
    /// match; `None` (a Unix socket or a subprocess without
    /// `nbd_set_tls_hostname`) verifies the chain only, as libnbd does.
    pub verify_host: Option<String>,
    /// The name sent as SNI.
    pub sni: Option<String>,
}

/// Reads a whole credentials file, with libnbd-like errors.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::new(
            e.raw_os_error().unwrap_or(libc::EIO),
            format!("open: {}", path.display()),
        )
    })
}

fn readable(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
    else {
        return false;
    };
    // SAFETY: c is a NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::R_OK) == 0 }
}

/// The reasons in an OpenSSL error stack, most specific last, without the
/// source locations OpenSSL adds.
fn reasons(stack: &ErrorStack) -> String {
    let mut out = String::new();
    for e in stack.errors() {
        let reason = e
            .reason()
            .map(str::to_string)
            .unwrap_or_else(|| format!("error {:#x}", e.code()));
        if !out.contains(&reason) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&reason);
        }
    }
    if out.is_empty() {
        out.push_str("unknown error");
    }
    out
}

fn ssl_setup_error(what: &str, stack: ErrorStack) -> Error {
    Error::new(0, format!("{what}: {}", reasons(&stack)))
}

/// Looks `username` up in a PSK file of `username:hexkey` lines and
/// decodes its key.
pub(crate) fn lookup_psk(file: &Path, username: &str) -> Result<Vec<u8>> {
    let text = read_file(file)?;
    let hex = text
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .find_map(|line| {
            let rest = line.strip_prefix(username.as_bytes())?.strip_prefix(b":")?;
            (!rest.is_empty()).then_some(rest)
        })
        .ok_or_else(|| {
            Error::new(
                libc::EINVAL,
                format!(
                    "{}: username {username} was not found in PSK file",
                    file.display()
                ),
            )
        })?;
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    if hex.len() % 2 != 0 {
        return Err(bad_key(file, username));
    }
    hex.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| bad_key(file, username))
}

fn bad_key(file: &Path, username: &str) -> Error {
    Error::new(
        libc::EINVAL,
        format!(
            "{}: the key of username {username} is not a hexadecimal string",
            file.display()
        ),
    )
}

/// The certificate directories searched when none is set: as libnbd,
/// `$HOME/.pki/libnbd` and `$HOME/.config/pki/libnbd` for other users,
/// `/etc/pki/libnbd` for root.
fn default_cert_dirs() -> Vec<PathBuf> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match std::env::var_os("HOME") {
        Some(home) if !root => {
            let home = PathBuf::from(home);
            vec![home.join(".pki/libnbd"), home.join(".config/pki/libnbd")]
        }
        _ if root => vec![PathBuf::from("/etc/pki/libnbd")],
        _ => Vec::new(),
    }
}

/// Loads `dir`'s certificates into `b`; false if it has no `ca-cert.pem`.
fn load_cert_dir(b: &mut SslContextBuilder, dir: &Path) -> Result<bool> {
    let ca = dir.join("ca-cert.pem");
    if !readable(&ca) {
        return Ok(false);
    }
    let setup = |what: &Path| {
        let what = what.display().to_string();
        move |e: ErrorStack| ssl_setup_error(&what, e)
    };
    for cert in X509::stack_from_pem(&read_file(&ca)?).map_err(setup(&ca))? {
        b.cert_store_mut().add_cert(cert).map_err(setup(&ca))?;
    }
    // A client certificate is optional.
    let (cert, key) = (dir.join("client-cert.pem"), dir.join("client-key.pem"));
    if readable(&cert) && readable(&key) {
        let mut chain = X509::stack_from_pem(&read_file(&cert)?)
            .map_err(setup(&cert))?
            .into_iter();
        let leaf = chain
            .next()
            .ok_or_else(|| Error::new(0, format!("{}: no certificate", cert.display())))?;
        b.set_certificate(&leaf).map_err(setup(&cert))?;
        for extra in chain {
            b.add_extra_chain_cert(extra).map_err(setup(&cert))?;
        }
        let pkey = PKey::private_key_from_pem(&read_file(&key)?).map_err(setup(&key))?;
        b.set_private_key(&pkey).map_err(setup(&key))?;
        b.check_private_key().map_err(setup(&key))?;
    }
    let crl = dir.join("ca-crl.pem");
    if readable(&crl) {
        let Some(path) = crl.to_str() else {
            return Err(Error::new(
                libc::EINVAL,
                format!("{}: path is not UTF-8", crl.display()),
            ));
        };
        let lookup = b
            .cert_store_mut()
            .add_lookup(X509Lookup::file())
            .map_err(setup(&crl))?;
        lookup
            .load_crl_file(path, SslFiletype::PEM)
            .map_err(setup(&crl))?;
        b.cert_store_mut()
            .set_flags(X509VerifyFlags::CRL_CHECK)
            .map_err(setup(&crl))?;
    }
    Ok(true)
}

/// Builds the client context the configuration describes.
fn context(config: &TlsConfig) -> Result<SslContext> {
    let setup = |e| ssl_setup_error("TLS setup", e);
    let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(setup)?;
    b.set_options(
        SslOptions::NO_COMPRESSION | SslOptions::IGNORE_UNEXPECTED_EOF | SslOptions::NO_TICKET,
    );
    b.set_mode(SslMode::ENABLE_PARTIAL_WRITE | SslMode::ACCEPT_MOVING_WRITE_BUFFER);
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(setup)?;
    if let Some((file, username)) = &config.psk {
        let key = lookup_psk(file, username)?;
        let mut identity = username.as_bytes().to_vec();
        identity.push(0);
        // Only PSK key exchanges in TLS 1.2: a server must prove it holds
        // the key, never authenticate with a certificate instead.
        b.set_cipher_list("ECDHE-PSK:DHE-PSK:PSK").map_err(setup)?;
        b.set_psk_client_callback(move |_ssl, _hint, id_out, key_out| {
            if identity.len() > id_out.len() || key.len() > key_out.len() {
                return Err(ErrorStack::get());
            }
            id_out[..identity.len()].copy_from_slice(&identity);
            key_out[..key.len()].copy_from_slice(&key);
            Ok(key.len())
        });
        // A TLS 1.3 server may ignore the PSK and send a certificate:
        // with no CA trusted, any certificate fails verification.
        b.set_verify(SslVerifyMode::PEER);
        return Ok(b.build());
    }
    let found = match &config.certificates {
        Some(dir) => load_cert_dir(&mut b, dir)?,
        None => {
            let mut found = false;
            for dir in default_cert_dirs() {
                if load_cert_dir(&mut b, &dir)? {
                    found = true;
                    break;
                }
            }
            found
        }
    };
    if !found {
        // No CA of our own: trust the system's.
        b.set_default_verify_paths().map_err(setup)?;
    }
    b.set_verify(if config.verify_peer {
        SslVerifyMode::PEER
    } else {
        SslVerifyMode::NONE
    });
    Ok(b.build())
}

/// The wrapped transport, as OpenSSL's byte stream.
struct Inner(Box<dyn Transport>);

impl Read for Inner {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
}

impl Write for Inner {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(&[IoSlice::new(buf)])
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS session over another transport.
pub(crate) struct TlsTransport {
    stream: SslStream<Inner>,
    handshake_done: bool,
    /// OpenSSL waits for the socket to become writable (handshake, or a
    /// read that must first write).
    want_write: bool,
    /// Plaintext accepted but not yet encrypted and sent: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// `shutdown_write` was asked for and has not been done yet.
    shutdown_pending: bool,
    /// We have said we are done writing (after `NBD_CMD_DISC`).
    shut: bool,
    /// OpenSSL reported a fatal error: the session must not be used again,
    /// not even for close_notify.
    failed: bool,
}

impl TlsTransport {
    /// Starts a client session over `inner`; [`Transport::handshake`]
    /// then runs the TLS handshake.
    pub(crate) fn new(inner: Box<dyn Transport>, config: &TlsConfig) -> Result<TlsTransport> {
        let ctx = context(config)?;
        let setup = |e| ssl_setup_error("TLS setup", e);
        let mut ssl = Ssl::new(&ctx).map_err(setup)?;
        if let Some(sni) = &config.sni {
            // SNI carries names only, never addresses.
            if sni.parse::<IpAddr>().is_err() && !sni.is_empty() {
                ssl.set_hostname(sni).map_err(setup)?;
            }
        }
        if let Some(host) = config.verify_host.as_ref().filter(|_| config.verify_peer) {
            let param = ssl.param_mut();
            match host.parse::<IpAddr>() {
                Ok(ip) => param.set_ip(ip).map_err(setup)?,
                Err(_) => param.set_host(host).map_err(setup)?,
            }
        }
        ssl.set_connect_state();
        let stream = SslStream::new(ssl, Inner(inner)).map_err(setup)?;
        Ok(TlsTransport {
            stream,
            handshake_done: false,
            want_write: true,
            out: Vec::new(),
            out_pos: 0,
            shutdown_pending: false,
            shut: false,
            failed: false,
        })
    }

    /// Why the handshake failed, as a message: "TLS handshake: " and
    /// OpenSSL's reason, then, for a certificate that failed
    /// verification, why it failed ("certificate verify failed: certificate
    /// has expired").
    fn handshake_error(&self, err: &openssl::ssl::Error) -> Error {
        let ssl = self.stream.ssl();
        let mut msg = String::from("TLS handshake: ");
        if let Some(stack) = err.ssl_error() {
            msg.push_str(&reasons(stack));
        } else if let Some(io) = err.io_error() {
            let _ = write!(msg, "{io}");
        } else {
            msg.push_str("the server closed the connection");
        }
        let verify = ssl.verify_result();
        if verify != X509VerifyResult::OK {
            if !msg.contains("certificate verify failed") {
                msg.push_str(": certificate verify failed");
            }
            let _ = write!(msg, ": {}", verify.error_string());
        }
        Error::new(0, msg)
    }

    /// Encrypts and sends what is buffered; true once all of it is out.
    fn flush_out(&mut self) -> io::Result<bool> {
        while self.out_pos < self.out.len() {
            match self.stream.ssl_write(&self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) => return self.want(e).map(|()| false),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Turns OpenSSL's "try again" into `Ok(())` and the rest into
    /// errors, after which the session is not used again.
    fn want(&mut self, e: openssl::ssl::Error) -> io::Result<()> {
        match e.code() {
            ErrorCode::WANT_READ | ErrorCode::WANT_WRITE => Ok(()),
            _ => {
                self.failed = true;
                Err(into_io(e))
            }
        }
    }

    fn finish_shutdown(&mut self) -> io::Result<()> {
        // close_notify is best effort, as libnbd ignores gnutls_bye failing.
        let _ = self.stream.shutdown();
        self.shutdown_pending = false;
        self.stream.get_mut().0.shutdown_write()
    }

    /// A description of the session for debug messages.
    pub(crate) fn describe(&self) -> String {
        let ssl = self.stream.ssl();
        match ssl.current_cipher() {
            Some(c) => format!(
                "{} cipher {} ({} bits)",
                ssl.version_str(),
                c.name(),
                c.bits().secret
            ),
            None => ssl.version_str().to_string(),
        }
    }
}

impl Drop for TlsTransport {
    /// A handle closed without `nbd_shutdown` still ends the session in
    /// order: close_notify goes out if the socket takes it now (we never
    /// wait for it, and never read the server's reply).
    fn drop(&mut self) {
        if self.handshake_done && !self.shut && !self.failed {
            let _ = self.stream.shutdown();
            // Leave nothing of ours in the thread's OpenSSL error queue.
            drop(ErrorStack::get());
        }
    }
}

fn into_io(e: openssl::ssl::Error) -> io::Error {
    match e.into_io_error() {
        Ok(io) => io,
        Err(e) => io::Error::other(match e.ssl_error() {
            Some(stack) => reasons(stack),
            None => e.to_string(),
        }),
    }
}

impl Transport for TlsTransport {
    fn fd(&self) -> RawFd {
        self.stream.get_ref().0.fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.stream.ssl_read(buf) {
            Ok(n) => {
                self.want_write = false;
                Ok(n)
            }
            Err(e) => match e.code() {
                // close_notify, or (IGNORE_UNEXPECTED_EOF) a plain close:
                // the state machine decides whether that was expected.
                ErrorCode::ZERO_RETURN => Ok(0),
                ErrorCode::WANT_READ => Err(io::ErrorKind::WouldBlock.into()),
                ErrorCode::WANT_WRITE => {
                    self.want_write = true;
                    Err(io::ErrorKind::WouldBlock.into())
                }
                // A plain close (no close_notify), or an error: the session
                // is over, and nothing more may be sent on it.
                _ => {
                    self.failed = true;
                    match e.code() {
                        ErrorCode::SYSCALL if e.io_error().is_none() => Ok(0),
                        // Once we are done, a server that just closes
                        // (qemu-nbd does, without reading our close_notify)
                        // has ended the connection, as libnbd also treats it.
                        _ if self.shut => Ok(0),
                        _ => Err(into_io(e)),
                    }
                }
            },
        }
    }

    fn send(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.flush_out()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut accepted = 0;
        for b in bufs {
            let mut pos = 0;
            while pos < b.len() {
                let left = &b[pos..];
                if !self.out.is_empty() || left.len() < RECORD {
                    // Small pieces (request headers) are gathered into
                    // records of their own rather than sent one by one.
                    // (The buffer holds less than a record here.)
                    let take = left.len().min(RECORD - self.out.len());
                    self.out.extend_from_slice(&left[..take]);
                    pos += take;
                    accepted += take;
                    if self.out.len() >= RECORD && !self.flush_out()? {
                        return Ok(accepted);
                    }
                    continue;
                }
                // Whole records straight from the caller's buffer.
                let chunk = &left[..RECORD];
                match self.stream.ssl_write(chunk) {
                    Ok(n) => {
                        pos += n;
                        accepted += n;
                    }
                    Err(e) => {
                        self.want(e)?;
                        // OpenSSL may have taken part of this record: it
                        // must be retried with the same bytes, so they
                        // are ours now.
                        self.out.extend_from_slice(chunk);
                        return Ok(accepted + chunk.len());
                    }
                }
            }
        }
        // Whatever does not go now goes from `flush`.
        self.flush_out()?;
        Ok(accepted)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown_pending = true;
        self.shut = true;
        if self.flush_out()? {
            self.finish_shutdown()?;
        }
        Ok(())
    }

    fn handshake(&mut self) -> Result<bool> {
        if self.handshake_done {
            return Ok(true);
        }
        match self.stream.connect() {
            Ok(()) => {
                self.handshake_done = true;
                self.want_write = false;
                Ok(true)
            }
            Err(e) if e.code() == ErrorCode::WANT_READ => {
                self.want_write = false;
                Ok(false)
            }
            Err(e) if e.code() == ErrorCode::WANT_WRITE => {
                self.want_write = true;
                Ok(false)
            }
            Err(e) => {
                self.failed = true;
                Err(self.handshake_error(&e))
            }
        }
    }

    fn wants_write(&self) -> bool {
        self.want_write || self.out_pos < self.out.len() || self.shutdown_pending
    }

    fn flush(&mut self) -> io::Result<bool> {
        if !self.handshake_done {
            return Ok(false);
        }
        let before = self.out.len() - self.out_pos;
        // A read that wanted to write gets retried by the next recv.
        self.want_write = false;
        let done = self.flush_out()?;
        if done && self.shutdown_pending {
            self.finish_shutdown()?;
        }
        Ok(before > 0 && before != self.out.len() - self.out_pos)
    }

    fn pending(&self) -> bool {
        self.stream.ssl().pending() > 0
    }

    fn tls_description(&self) -> Option<String> {
        Some(self.describe())
    }
}
