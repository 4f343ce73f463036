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
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use foreign_types_shared::{ForeignType, ForeignTypeRef};
use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslStream,
    SslVerifyMode, SslVersion,
};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509Crl, X509VerifyResult, X509};
use zeroize::Zeroizing;

use super::Transport;
use crate::{Error, Result};

extern "C" {
    /// libcrypto's; the openssl crate has no safe call for it.
    fn X509_STORE_add_crl(store: *mut libc::c_void, crl: *mut libc::c_void) -> libc::c_int;
}

/// The largest TLS record's plaintext, and the most bytes buffered.
const RECORD: usize = 16 * 1024;

/// X.509 credentials as PEM bytes: what a certificates directory holds
/// (`ca-cert.pem`, `client-cert.pem`, `client-key.pem`, `ca-crl.pem`),
/// given from memory instead (beyond libnbd). The key is wiped from memory
/// when the credentials are dropped.
#[derive(Clone, Default)]
pub struct TlsCredentials {
    ca: Option<Vec<u8>>,
    crl: Option<Vec<u8>>,
    cert: Option<Vec<u8>>,
    key: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for TlsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which parts are there, never the key.
        f.debug_struct("TlsCredentials")
            .field("ca", &self.ca.is_some())
            .field("crl", &self.crl.is_some())
            .field("client_cert", &self.cert.is_some())
            .field("client_key", &self.key.is_some())
            .finish()
    }
}

impl TlsCredentials {
    /// No credentials: the server is verified against the system's CAs.
    pub fn new() -> TlsCredentials {
        TlsCredentials::default()
    }

    /// The CA certificate(s) the server's chain must lead to, as PEM
    /// (what `ca-cert.pem` holds). Without it the system's CAs are used.
    pub fn ca_pem(mut self, pem: &[u8]) -> TlsCredentials {
        self.ca = Some(pem.to_vec());
        self
    }

    /// A certificate revocation list, as PEM (what `ca-crl.pem` holds).
    pub fn crl_pem(mut self, pem: &[u8]) -> TlsCredentials {
        self.crl = Some(pem.to_vec());
        self
    }

    /// The client certificate (and any intermediate certificates after
    /// it) and its private key, as PEM, for servers that ask for one. An
    /// encrypted key needs the password of `Handle::set_tls_key_password`.
    pub fn client_pem(mut self, cert: &[u8], key: &[u8]) -> TlsCredentials {
        self.cert = Some(cert.to_vec());
        self.key = Some(Zeroizing::new(key.to_vec()));
        self
    }
}

/// Where the pre-shared key comes from.
#[derive(Clone)]
pub(crate) enum PskSource {
    /// `nbd_set_tls_psk_file`: a `username:hexkey` file, and the user name
    /// to look up in it.
    File(PathBuf, String),
    /// A user name and its key, given from memory.
    Key(String, Zeroizing<Vec<u8>>),
}

impl std::fmt::Debug for PskSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PskSource::File(file, user) => write!(f, "File({file:?}, {user:?})"),
            PskSource::Key(user, _) => write!(f, "Key({user:?}, ...)"),
        }
    }
}

/// How the client authenticates, and what it checks of the server.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsConfig {
    /// `nbd_set_tls_certificates`; `None` searches the default directories.
    pub certificates: Option<PathBuf>,
    /// Credentials from memory, used instead of any directory.
    pub credentials: Option<TlsCredentials>,
    /// The password of an encrypted client key.
    pub key_password: Option<Zeroizing<Vec<u8>>>,
    /// The pre-shared key: authenticates both ends instead of certificates.
    pub psk: Option<PskSource>,
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
    nix::unistd::access(path, nix::unistd::AccessFlags::R_OK).is_ok()
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
    let root = nix::unistd::geteuid().is_root();
    match std::env::var_os("HOME") {
        Some(home) if !root => {
            let home = PathBuf::from(home);
            vec![home.join(".pki/libnbd"), home.join(".config/pki/libnbd")]
        }
        _ if root => vec![PathBuf::from("/etc/pki/libnbd")],
        _ => Vec::new(),
    }
}

/// Reads `dir`'s certificates; `None` if it has no `ca-cert.pem` (as in
/// libnbd, the one file that must be there). The client certificate and
/// key are read only when both are there.
fn read_cert_dir(dir: &Path) -> Result<Option<TlsCredentials>> {
    let ca = dir.join("ca-cert.pem");
    if !readable(&ca) {
        return Ok(None);
    }
    let mut creds = TlsCredentials::new().ca_pem(&read_file(&ca)?);
    let (cert, key) = (dir.join("client-cert.pem"), dir.join("client-key.pem"));
    if readable(&cert) && readable(&key) {
        let key = Zeroizing::new(read_file(&key)?);
        creds = creds.client_pem(&read_file(&cert)?, &key);
    }
    let crl = dir.join("ca-crl.pem");
    if readable(&crl) {
        creds = creds.crl_pem(&read_file(&crl)?);
    }
    Ok(Some(creds))
}

/// Loads X.509 credentials into `b`, whether they came from a directory
/// (`from` names it in errors) or from memory; without a CA, the system's
/// CAs are trusted.
fn load_credentials(
    b: &mut SslContextBuilder,
    creds: &TlsCredentials,
    key_password: Option<&[u8]>,
    from: &dyn Fn(&str) -> String,
) -> Result<()> {
    let setup = |what: &str| {
        let what = from(what);
        move |e: ErrorStack| ssl_setup_error(&what, e)
    };
    match &creds.ca {
        Some(pem) => {
            let cas = X509::stack_from_pem(pem).map_err(setup("ca-cert.pem"))?;
            if cas.is_empty() {
                // Nothing could verify the server: say so now.
                return Err(Error::new(
                    0,
                    format!("{}: no certificate found", from("ca-cert.pem")),
                ));
            }
            for cert in cas {
                b.cert_store_mut()
                    .add_cert(cert)
                    .map_err(setup("ca-cert.pem"))?;
            }
        }
        None => b
            .set_default_verify_paths()
            .map_err(|e| ssl_setup_error("TLS setup", e))?,
    }
    if let (Some(cert), Some(key)) = (&creds.cert, &creds.key) {
        let mut chain = X509::stack_from_pem(cert)
            .map_err(setup("client-cert.pem"))?
            .into_iter();
        let leaf = chain
            .next()
            .ok_or_else(|| Error::new(0, format!("{}: no certificate", from("client-cert.pem"))))?;
        b.set_certificate(&leaf).map_err(setup("client-cert.pem"))?;
        for extra in chain {
            b.add_extra_chain_cert(extra)
                .map_err(setup("client-cert.pem"))?;
        }
        let pkey = match key_password {
            Some(pw) => PKey::private_key_from_pem_passphrase(key, pw),
            // An encrypted key without a password fails rather than
            // OpenSSL asking on the terminal.
            None => PKey::private_key_from_pem_callback(key, |_| Ok(0)),
        }
        .map_err(setup("client-key.pem"))?;
        b.set_private_key(&pkey).map_err(setup("client-key.pem"))?;
        b.check_private_key().map_err(setup("client-key.pem"))?;
    }
    if let Some(pem) = &creds.crl {
        let crl = X509Crl::from_pem(pem).map_err(setup("ca-crl.pem"))?;
        let store = b.cert_store_mut();
        // SAFETY: both pointers are valid for the call; X509_STORE_add_crl
        // takes its own reference to the CRL (which the openssl crate has
        // no safe call for).
        let rc = unsafe { X509_STORE_add_crl(store.as_ptr().cast(), crl.as_ptr().cast()) };
        if rc != 1 {
            return Err(setup("ca-crl.pem")(ErrorStack::get()));
        }
        store
            .set_flags(X509VerifyFlags::CRL_CHECK)
            .map_err(setup("ca-crl.pem"))?;
    }
    Ok(())
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
    if let Some(psk) = &config.psk {
        let (username, key) = match psk {
            PskSource::File(file, username) => {
                (username, Zeroizing::new(lookup_psk(file, username)?))
            }
            PskSource::Key(username, key) => (username, key.clone()),
        };
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
    let password = config.key_password.as_deref().map(Vec::as_slice);
    if let Some(creds) = &config.credentials {
        load_credentials(&mut b, creds, password, &|what| {
            format!("{what} (in memory)")
        })?;
    } else {
        let dirs = match &config.certificates {
            Some(dir) => vec![dir.clone()],
            None => default_cert_dirs(),
        };
        let mut found = None;
        for dir in dirs {
            if let Some(creds) = read_cert_dir(&dir)? {
                found = Some((dir, creds));
                break;
            }
        }
        match found {
            Some((dir, creds)) => load_credentials(&mut b, &creds, password, &|what| {
                dir.join(what).display().to_string()
            })?,
            // No CA of our own: trust the system's.
            None => b.set_default_verify_paths().map_err(setup)?,
        }
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
    fn fd(&self) -> BorrowedFd<'_> {
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
