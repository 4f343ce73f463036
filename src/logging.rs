//! Debug messages to the `log` crate (cargo feature `log`).
#![warn(missing_docs)]

use crate::{Handle, Result};

/// Sends `handle`'s debug messages (`nbd_set_debug_callback`) to the `log`
/// crate, target `nbd`, level debug, as `context: message`; and turns
/// debugging on (`nbd_set_debug`) if that level is enabled for the target
/// now. Debugging costs CPU, so it stays off otherwise.
///
/// ```
/// let h = nbd::Handle::new().unwrap();
/// nbd::log_to_log_crate(&h).unwrap();
/// ```
pub fn log_to_log_crate(handle: &Handle) -> Result<()> {
    handle.set_debug_callback(|context, msg| {
        log::debug!(target: "nbd", "{context}: {msg}");
    })?;
    if log::log_enabled!(target: "nbd", log::Level::Debug) {
        handle.set_debug(true)?;
    }
    Ok(())
}
