//! TLS settings and `NBD_OPT_STARTTLS`.
//!
//! The settings only take effect when the handle connects: with TLS
//! allowed or required, the handshake asks for TLS before any other
//! option (see `conn/tls.rs`).

use std::path::{Path, PathBuf};

use super::opt::{run_option, start_option};
use super::{Handle, INFO_STATES};
use crate::callback::Completion;
use crate::conn::UserOption;
use crate::transport::TlsCredentials;
use crate::{Error, Result, Tls};

impl Handle {
    /// Disables, allows or requires TLS (`LIBNBD_TLS_DISABLE`, `_ALLOW`,
    /// `_REQUIRE`; default disabled).
    ///
    /// libnbd: `nbd_set_tls`.
    pub fn set_tls(&self, tls: Tls) -> Result<()> {
        self.lock().set_tls_mode(tls as i32)
    }

    /// The TLS setting (`LIBNBD_TLS_*`).
    ///
    /// libnbd: `nbd_get_tls`.
    pub fn tls(&self) -> Tls {
        Tls::from_raw(self.lock().tls_mode()).unwrap_or_default()
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
        self.lock().set_tls_certificates(dir.as_ref().to_path_buf())
    }

    /// Whether to verify the server's certificate (default true): its
    /// chain, on every transport, and its name when one is known (from
    /// [`Handle::set_tls_hostname`], else the host connected to over TCP).
    /// False keeps the session encrypted but accepts any certificate.
    ///
    /// libnbd: `nbd_set_tls_verify_peer`.
    pub fn set_tls_verify_peer(&self, verify: bool) -> Result<()> {
        self.lock().set_tls_verify_peer(verify)
    }

    /// See [`Handle::set_tls_verify_peer`].
    ///
    /// libnbd: `nbd_get_tls_verify_peer`.
    pub fn tls_verify_peer(&self) -> bool {
        self.lock().tls_verify_peer()
    }

    /// The user name for pre-shared keys (default: the login name).
    ///
    /// libnbd: `nbd_set_tls_username`.
    pub fn set_tls_username(&self, username: &str) -> Result<()> {
        self.lock().set_tls_username(username)
    }

    /// The user name for pre-shared keys: the one set, else `$LOGNAME`,
    /// else the login name of the controlling terminal.
    ///
    /// libnbd: `nbd_get_tls_username`.
    pub fn tls_username(&self) -> Result<String> {
        self.lock().tls_username()
    }

    /// The file of pre-shared keys, `username:hexkey` per line. Setting it
    /// makes the handle authenticate with a key instead of certificates.
    ///
    /// libnbd: `nbd_set_tls_psk_file`.
    pub fn set_tls_psk_file<P: AsRef<Path>>(&self, file: P) -> Result<()> {
        self.lock().set_tls_psk_file(PathBuf::from(file.as_ref()))
    }

    /// X.509 credentials from memory instead of a certificates directory
    /// (beyond libnbd): the same checks apply as to the files of
    /// [`Handle::set_tls_certificates`], which these replace.
    pub fn set_tls_credentials(&self, credentials: TlsCredentials) -> Result<()> {
        self.lock().update_tls_credentials(|_| credentials)
    }

    /// Changes the X.509 credentials from memory in place (starting from
    /// none), for the C calls that set one part at a time.
    pub(crate) fn update_tls_credentials(
        &self,
        f: impl FnOnce(TlsCredentials) -> TlsCredentials,
    ) -> Result<()> {
        self.lock().update_tls_credentials(f)
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
        self.lock().set_tls_psk(username, key)
    }

    /// The password of an encrypted client key, from a certificates
    /// directory's `client-key.pem` or from [`TlsCredentials::client_pem`]
    /// (beyond libnbd). Without it an encrypted key fails to load.
    ///
    /// Beyond libnbd; in C: `rnbd_set_tls_key_password`.
    pub fn set_tls_key_password(&self, password: &[u8]) -> Result<()> {
        self.lock().set_tls_key_password(password)
    }

    /// The name the server's certificate is checked against, instead of
    /// the host connected to (or when connecting by Unix socket).
    ///
    /// libnbd: `nbd_set_tls_hostname`.
    pub fn set_tls_hostname(&self, hostname: &str) -> Result<()> {
        self.lock().set_tls_hostname(hostname)
    }

    /// The TLS host name in effect (`nbd_get_tls_hostname`): the one set
    /// with [`Handle::set_tls_hostname`], else the host connected to;
    /// `None` when there is neither (libnbd's C call gives `""`).
    pub fn tls_hostname(&self) -> Option<String> {
        let name = self.lock().tls_hostname().to_string();
        (!name.is_empty()).then_some(name)
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
            self.limits(),
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
