//! TLS settings and `NBD_OPT_STARTTLS`.
//!
//! The settings only take effect when the handle connects: with TLS
//! allowed or required, the handshake asks for TLS before any other
//! option (see `conn/tls.rs`).

use std::path::{Path, PathBuf};

use super::opt::{run_option, start_option};
use super::{Handle, INFO_STATES};
use crate::callback::Completion;
use crate::conn::{Conn, Perm, UserOption};
use crate::flags::raw::{LIBNBD_TLS_DISABLE, LIBNBD_TLS_REQUIRE};
use crate::transport::TlsCredentials;
use crate::uri::UriTls;
use crate::{Error, Result, Tls};
use zeroize::Zeroizing;

const CREATED: &[Perm] = &[Perm::Created];

impl Handle {
    /// Disables, allows or requires TLS (`LIBNBD_TLS_DISABLE`, `_ALLOW`,
    /// `_REQUIRE`; default disabled).
    ///
    /// libnbd: `nbd_set_tls`.
    pub fn set_tls(&self, tls: Tls) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CREATED)?;
        c.tls.mode = tls as i32;
        Ok(())
    }

    /// [`Handle::set_tls`] with a `LIBNBD_TLS_*` value, checked before the
    /// handle's state as libnbd does.
    pub(crate) fn set_tls_c(&self, tls: i32) -> Result<()> {
        if !(LIBNBD_TLS_DISABLE..=LIBNBD_TLS_REQUIRE).contains(&tls) {
            return Err(Error::new(
                libc::EINVAL,
                format!("tls: invalid value for parameter: {tls}"),
            ));
        }
        self.set_tls(Tls::from_raw(tls).unwrap_or_default())
    }

    /// The TLS setting (`LIBNBD_TLS_*`).
    ///
    /// libnbd: `nbd_get_tls`.
    pub fn tls(&self) -> Tls {
        Tls::from_raw(self.lock().tls.mode).unwrap_or_default()
    }

    /// Whether the connection is encrypted.
    ///
    /// libnbd: `nbd_get_tls_negotiated`.
    pub fn tls_negotiated(&self) -> Result<bool> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        Ok(c.tls_negotiated())
    }

    /// The directory of `ca-cert.pem`, `client-cert.pem`,
    /// `client-key.pem` and `ca-crl.pem`. Unset, `$HOME/.pki/libnbd` and
    /// `$HOME/.config/pki/libnbd` (or `/etc/pki/libnbd` for root) are
    /// searched, then the system's trusted CAs are used.
    ///
    /// libnbd: `nbd_set_tls_certificates`.
    pub fn set_tls_certificates<P: AsRef<Path>>(&self, dir: P) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CREATED)?;
        c.tls.certificates = Some(dir.as_ref().to_path_buf());
        Ok(())
    }

    /// Whether to verify the server's certificate (default true): its
    /// chain, on every transport, and its name when one is known (from
    /// [`Handle::set_tls_hostname`], else the host connected to over TCP).
    /// False keeps the session encrypted but accepts any certificate.
    ///
    /// libnbd: `nbd_set_tls_verify_peer`.
    pub fn set_tls_verify_peer(&self, verify: bool) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CREATED)?;
        c.tls.verify_peer = verify;
        Ok(())
    }

    /// See [`Handle::set_tls_verify_peer`].
    ///
    /// libnbd: `nbd_get_tls_verify_peer`.
    pub fn tls_verify_peer(&self) -> bool {
        self.lock().tls.verify_peer
    }

    /// The user name for pre-shared keys (default: the login name).
    ///
    /// libnbd: `nbd_set_tls_username`.
    pub fn set_tls_username(&self, username: &str) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CREATED)?;
        c.tls.username = Some(username.to_string());
        Ok(())
    }

    /// The user name for pre-shared keys: the one set, else `$LOGNAME`,
    /// else the login name of the controlling terminal.
    ///
    /// libnbd: `nbd_get_tls_username`.
    pub fn tls_username(&self) -> Result<String> {
        self.lock().tls.effective_username()
    }

    /// The file of pre-shared keys, `username:hexkey` per line. Setting it
    /// makes the handle authenticate with a key instead of certificates.
    ///
    /// libnbd: `nbd_set_tls_psk_file`.
    pub fn set_tls_psk_file<P: AsRef<Path>>(&self, file: P) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CREATED)?;
        c.tls.psk_file = Some(PathBuf::from(file.as_ref()));
        Ok(())
    }

    /// X.509 credentials from memory instead of a certificates directory
    /// (beyond libnbd): the same checks apply as to the files of
    /// [`Handle::set_tls_certificates`], which these replace.
    pub fn set_tls_credentials(&self, credentials: TlsCredentials) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CREATED)?;
        c.tls.credentials = Some(credentials);
        Ok(())
    }

    /// Changes the X.509 credentials from memory in place (starting from
    /// none), for the C calls that set one part at a time.
    pub(crate) fn update_tls_credentials(
        &self,
        f: impl FnOnce(TlsCredentials) -> TlsCredentials,
    ) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CREATED)?;
        let old = c.tls.credentials.take().unwrap_or_default();
        c.tls.credentials = Some(f(old));
        Ok(())
    }

    /// A pre-shared key from memory instead of a PSK file (beyond
    /// libnbd): `username` and its key, which authenticate both ends as
    /// [`Handle::set_tls_psk_file`] does. The key is wiped from memory when
    /// the handle is closed.
    ///
    /// Beyond libnbd; in C: `rnbd_set_tls_psk`.
    pub fn set_tls_psk(&self, username: &str, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::new(libc::EINVAL, "key: the key is empty"));
        }
        let mut c = self.lock();
        c.check_state(CREATED)?;
        c.tls.username = Some(username.to_string());
        c.tls.psk_key = Some(Zeroizing::new(key.to_vec()));
        Ok(())
    }

    /// The password of an encrypted client key, from a certificates
    /// directory's `client-key.pem` or from [`TlsCredentials::client_pem`]
    /// (beyond libnbd). Without it an encrypted key fails to load.
    ///
    /// Beyond libnbd; in C: `rnbd_set_tls_key_password`.
    pub fn set_tls_key_password(&self, password: &[u8]) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CREATED)?;
        c.tls.key_password = Some(Zeroizing::new(password.to_vec()));
        Ok(())
    }

    /// The name the server's certificate is checked against, instead of
    /// the host connected to (or when connecting by Unix socket).
    ///
    /// libnbd: `nbd_set_tls_hostname`.
    pub fn set_tls_hostname(&self, hostname: &str) -> Result<()> {
        let mut c = self.lock();
        c.check_state(CREATED)?;
        c.tls.hostname = Some(hostname.to_string());
        Ok(())
    }

    /// The TLS host name in effect (`nbd_get_tls_hostname`): the one set
    /// with [`Handle::set_tls_hostname`], else the host connected to;
    /// `None` when there is neither (libnbd's C call gives `""`).
    pub fn tls_hostname(&self) -> Option<String> {
        let c = self.lock();
        c.tls
            .effective_hostname(c.net.hostname.as_deref())
            .map(str::to_string)
    }

    /// Whether this library supports TLS: always.
    ///
    /// libnbd: `nbd_supports_tls`.
    pub fn supports_tls(&self) -> bool {
        true
    }

    /// Asks the server for TLS (`NBD_OPT_STARTTLS`) in option mode: true
    /// if the handshake succeeded, false if the server refused.
    ///
    /// libnbd: `nbd_opt_starttls`.
    pub fn opt_starttls(&self) -> Result<bool> {
        run_option(
            &mut self.lock(),
            self.limits().deadline,
            UserOption::StartTls,
            None,
            None,
        )
        .map(|r| r == 1)
    }

    /// Starts `NBD_OPT_STARTTLS`; `completion` reports its end (errno
    /// `ENOTSUP` or `EINVAL` if the server refused).
    ///
    /// libnbd: `nbd_aio_opt_starttls`.
    pub fn aio_opt_starttls(&self, completion: Option<Completion>) -> Result<()> {
        start_option(
            &mut self.lock(),
            UserOption::StartTls,
            completion,
            None,
            None,
        )
    }
}

/// Applies what a URI says about TLS: `nbds` requires it; the `tls-*`
/// parameters and the user name (`nbds://user@host/`) set the rest.
pub(super) fn apply_uri_tls(c: &mut Conn, t: &UriTls, user: Option<&[u8]>) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if t.require {
        c.tls.mode = LIBNBD_TLS_REQUIRE;
    }
    if let Some(dir) = &t.certificates {
        c.tls.certificates = Some(PathBuf::from(OsStr::from_bytes(dir)));
    }
    if let Some(file) = &t.psk_file {
        c.tls.psk_file = Some(PathBuf::from(OsStr::from_bytes(file)));
    }
    if let Some(h) = &t.hostname {
        c.tls.hostname = Some(text(h));
    }
    if let Some(v) = t.verify_peer {
        c.tls.verify_peer = v;
    }
    // The user name of the authority, as libnbd, is the TLS user name.
    if let Some(u) = user {
        c.tls.username = Some(text(u));
    }
}
