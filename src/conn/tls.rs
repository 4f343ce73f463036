//! TLS in the connection: the settings, the switch to TLS once the server
//! accepts `NBD_OPT_STARTTLS`, and the non-blocking TLS handshake step.
//!
//! The option itself goes through the option engine (`options.rs`) like
//! any other; this module replaces the transport with a
//! [`TlsTransport`] around the old one and drives its handshake from the
//! same `progress` loop, waiting in whichever direction OpenSSL wants.

use std::path::PathBuf;

use super::{Conn, Phase, Step};
use crate::flags::raw::{LIBNBD_TLS_DISABLE, LIBNBD_TLS_REQUIRE};
use crate::transport::{PskSource, TlsConfig, TlsCredentials, TlsTransport};
use crate::{Error, Result};

/// The TLS settings of a handle and what the connection negotiated.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    /// `LIBNBD_TLS_DISABLE`, `_ALLOW` or `_REQUIRE`.
    pub(super) mode: i32,
    pub(super) certificates: Option<PathBuf>,
    pub(super) verify_peer: bool,
    pub(super) username: Option<String>,
    pub(super) psk_file: Option<PathBuf>,
    /// A pre-shared key given from memory; wins over `psk_file`.
    pub(super) psk_key: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// X.509 credentials given from memory; win over `certificates`.
    pub(super) credentials: Option<TlsCredentials>,
    /// The password of an encrypted client key.
    pub(super) key_password: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// `nbd_set_tls_hostname`: checked instead of the host connected to.
    pub(super) hostname: Option<String>,
    /// The connection is encrypted.
    pub(super) negotiated: bool,
    /// The automatic `NBD_OPT_STARTTLS` has been sent.
    pub(super) tried: bool,
}

impl Default for Tls {
    fn default() -> Tls {
        Tls {
            mode: LIBNBD_TLS_DISABLE,
            certificates: None,
            verify_peer: true,
            username: None,
            psk_file: None,
            psk_key: None,
            credentials: None,
            key_password: None,
            hostname: None,
            negotiated: false,
            tried: false,
        }
    }
}

extern "C" {
    fn getlogin_r(buf: *mut libc::c_char, len: libc::size_t) -> libc::c_int;
}

/// The local login name: `$LOGNAME`, else `getlogin_r`, as libnbd finds it.
pub(crate) fn login_name() -> Result<String> {
    if let Some(name) = std::env::var_os("LOGNAME") {
        return Ok(name.to_string_lossy().into_owned());
    }
    let mut buf = vec![0u8; 64];
    loop {
        // SAFETY: buf is writable for its whole length.
        let rc = unsafe { getlogin_r(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            buf.truncate(end);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if rc != libc::ERANGE || buf.len() > 4096 {
            return Err(Error::new(rc, "getlogin_r"));
        }
        buf.resize(buf.len() * 2, 0);
    }
}

impl Tls {
    /// The user name for PSK: the one set, else the login name.
    pub(crate) fn effective_username(&self) -> Result<String> {
        match &self.username {
            Some(u) => Ok(u.clone()),
            None => login_name(),
        }
    }

    /// The name the server certificate is checked against: the TLS host
    /// name if set, else the host connected to by name.
    pub(crate) fn effective_hostname<'a>(&'a self, connected: Option<&'a str>) -> Option<&'a str> {
        self.hostname.as_deref().or(connected)
    }
}

impl Conn {
    /// Whether the automatic handshake should send `NBD_OPT_STARTTLS` now
    /// (first, and once); marks it sent.
    pub(super) fn take_auto_starttls(&mut self) -> bool {
        if self.tls.mode == LIBNBD_TLS_DISABLE || self.tls.tried || self.tls.negotiated {
            return false;
        }
        self.tls.tried = true;
        true
    }

    /// libnbd's refusal of a server that cannot do TLS when TLS is required.
    pub(super) fn check_tls_not_required(&self, what: &str) -> Result<()> {
        if self.tls.mode == LIBNBD_TLS_REQUIRE {
            return Err(Error::new(
                libc::ENOTSUP,
                format!("handshake: server {what}, but handle TLS setting is 'require' (2)"),
            ));
        }
        Ok(())
    }

    /// The error when the server refuses `NBD_OPT_STARTTLS` and TLS is required.
    pub(super) fn starttls_refused_error(&self) -> Option<Error> {
        (self.tls.mode == LIBNBD_TLS_REQUIRE).then(|| {
            Error::new(
                libc::ENOTSUP,
                "handshake: server refused TLS, but handle TLS setting is 'require' (2)",
            )
        })
    }

    fn tls_config(&self) -> Result<TlsConfig> {
        let psk = match (&self.tls.psk_key, &self.tls.psk_file) {
            (Some(key), _) => Some(PskSource::Key(self.tls.effective_username()?, key.clone())),
            (None, Some(file)) => Some(PskSource::File(
                file.clone(),
                self.tls.effective_username()?,
            )),
            (None, None) => None,
        };
        let host = self
            .tls
            .effective_hostname(self.net.hostname.as_deref())
            .map(str::to_string);
        Ok(TlsConfig {
            certificates: self.tls.certificates.clone(),
            credentials: self.tls.credentials.clone(),
            key_password: self.tls.key_password.clone(),
            verify_peer: self.tls.verify_peer && psk.is_none(),
            verify_host: host,
            // As libnbd: SNI names the host connected to, never the
            // name set with nbd_set_tls_hostname.
            sni: self.net.hostname.clone(),
            psk,
        })
    }

    /// The server accepted `NBD_OPT_STARTTLS`: wrap the transport in TLS
    /// and start the handshake. What was negotiated in plaintext is
    /// forgotten, as the protocol requires.
    pub(super) fn start_tls_session(&mut self) -> Result<()> {
        if self.tls.negotiated {
            return Err(Error::new(
                libc::EPROTO,
                "handshake: unable to support server accepting TLS twice",
            ));
        }
        self.negotiated.structured_replies = false;
        self.negotiated.extended_headers = false;
        self.negotiated.meta_contexts.clear();
        self.negotiated.meta_valid = false;
        self.reset_export_info();
        let config = self.tls_config()?;
        let inner = self.transport.take().expect("STARTTLS without transport");
        let tls = TlsTransport::new(inner, &config)?;
        self.transport = Some(Box::new(tls));
        self.phase = Phase::Handshake(Step::TlsHandshake);
        Ok(())
    }

    /// One step of the TLS handshake; true once it has completed, after
    /// which option negotiation goes on over TLS.
    pub(super) fn tls_handshake_step(&mut self) -> Result<bool> {
        let t = self
            .transport
            .as_mut()
            .expect("TLS handshake without transport");
        if !t.handshake()? {
            return Ok(false);
        }
        self.tls.negotiated = true;
        let desc = t.tls_description().unwrap_or_default();
        self.debug
            .log(|| format!("connection is using TLS: {desc}"));
        let user = self.option_run.as_ref().is_some_and(|r| r.is_user());
        if user {
            self.finish_option(Ok(1));
        } else {
            self.option_run = None;
            self.next_auto_option();
        }
        Ok(true)
    }

    /// Sends what the transport still buffers; true if bytes moved.
    pub(super) fn flush_transport(&mut self) -> Result<bool> {
        match self.transport.as_mut() {
            Some(t) if t.wants_write() => t.flush().map_err(|e| Error::io("send", &e)),
            _ => Ok(false),
        }
    }

    /// Whether the transport wants the fd writable.
    pub(super) fn transport_wants_write(&self) -> bool {
        self.transport.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Whether received data waits inside the transport (TLS), so the
    /// caller must not block in poll before calling `progress`.
    pub(crate) fn transport_pending(&self) -> bool {
        self.transport.as_ref().is_some_and(|t| t.pending())
    }

    /// Whether the connection is using TLS.
    pub(crate) fn tls_negotiated(&self) -> bool {
        self.tls.negotiated
    }
}

/// States in which the TLS settings may change: before connecting.
const CREATED: &[super::Perm] = &[super::Perm::Created];

/// The TLS settings as the handle layer sets them: each only on a new
/// handle, since the handshake uses them.
impl Conn {
    /// `LIBNBD_TLS_DISABLE`, `_ALLOW` or `_REQUIRE`.
    pub(crate) fn tls_mode(&self) -> i32 {
        self.tls.mode
    }

    /// Disables, allows or requires TLS (a `LIBNBD_TLS_*` already checked).
    pub(crate) fn set_tls_mode(&mut self, mode: i32) -> Result<()> {
        self.check_state(CREATED)?;
        self.tls.mode = mode;
        Ok(())
    }

    /// The directory of the X.509 certificates.
    pub(crate) fn set_tls_certificates(&mut self, dir: PathBuf) -> Result<()> {
        self.check_state(CREATED)?;
        self.tls.certificates = Some(dir);
        Ok(())
    }

    /// Whether the server's certificate is verified.
    pub(crate) fn tls_verify_peer(&self) -> bool {
        self.tls.verify_peer
    }

    /// Verifies the server's certificate, or not.
    pub(crate) fn set_tls_verify_peer(&mut self, verify: bool) -> Result<()> {
        self.check_state(CREATED)?;
        self.tls.verify_peer = verify;
        Ok(())
    }

    /// The user name for pre-shared keys: the one set, else the login name.
    pub(crate) fn tls_username(&self) -> Result<String> {
        self.tls.effective_username()
    }

    /// Sets the user name for pre-shared keys.
    pub(crate) fn set_tls_username(&mut self, username: &str) -> Result<()> {
        self.check_state(CREATED)?;
        self.tls.username = Some(username.to_string());
        Ok(())
    }

    /// The file of pre-shared keys.
    pub(crate) fn set_tls_psk_file(&mut self, file: PathBuf) -> Result<()> {
        self.check_state(CREATED)?;
        self.tls.psk_file = Some(file);
        Ok(())
    }

    /// Changes the X.509 credentials from memory, starting from those set
    /// (or none).
    pub(crate) fn update_tls_credentials(
        &mut self,
        f: impl FnOnce(TlsCredentials) -> TlsCredentials,
    ) -> Result<()> {
        self.check_state(CREATED)?;
        let old = self.tls.credentials.take().unwrap_or_default();
        self.tls.credentials = Some(f(old));
        Ok(())
    }

    /// A pre-shared key from memory, with its user name.
    pub(crate) fn set_tls_psk(&mut self, username: &str, key: &[u8]) -> Result<()> {
        self.check_state(CREATED)?;
        self.tls.username = Some(username.to_string());
        self.tls.psk_key = Some(zeroize::Zeroizing::new(key.to_vec()));
        Ok(())
    }

    /// The password of an encrypted client key.
    pub(crate) fn set_tls_key_password(&mut self, password: &[u8]) -> Result<()> {
        self.check_state(CREATED)?;
        self.tls.key_password = Some(zeroize::Zeroizing::new(password.to_vec()));
        Ok(())
    }

    /// The name the server's certificate is checked against.
    pub(crate) fn set_tls_hostname(&mut self, hostname: &str) -> Result<()> {
        self.check_state(CREATED)?;
        self.tls.hostname = Some(hostname.to_string());
        Ok(())
    }

    /// The TLS host name in effect: the one set, else the host connected
    /// to by name; `""` when there is none.
    pub(crate) fn tls_hostname(&self) -> &str {
        self.tls
            .effective_hostname(self.net.hostname.as_deref())
            .unwrap_or("")
    }

    /// Applies what a URI says about TLS: `nbds` requires it; the `tls-*`
    /// parameters and the user name (`nbds://user@host/`) set the rest.
    pub(super) fn apply_uri_tls(&mut self, t: &crate::uri::UriTls, user: Option<&[u8]>) {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if t.require {
            self.tls.mode = LIBNBD_TLS_REQUIRE;
        }
        if let Some(dir) = &t.certificates {
            self.tls.certificates = Some(PathBuf::from(OsStr::from_bytes(dir)));
        }
        if let Some(file) = &t.psk_file {
            self.tls.psk_file = Some(PathBuf::from(OsStr::from_bytes(file)));
        }
        if let Some(h) = &t.hostname {
            self.tls.hostname = Some(text(h));
        }
        if let Some(v) = t.verify_peer {
            self.tls.verify_peer = v;
        }
        // The user name of the authority, as libnbd, is the TLS user name.
        if let Some(u) = user {
            self.tls.username = Some(text(u));
        }
    }
}
