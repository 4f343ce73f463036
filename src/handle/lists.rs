//! Lists as values: the callback-free forms of `opt_list`, the meta
//! context options and block status, which collect what the callback
//! forms report into a `Vec`.

use std::sync::{Arc, Mutex, PoisonError};

use super::Handle;
use crate::callback::{Context, Extent64, Extent64Cb, List};
use crate::{CmdFlag, Result};

/// An export the server listed ([`Handle::opt_list_exports`],
/// `AsyncHandle::opt_list`; libnbd's `nbd_opt_list` callback arguments).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Export {
    /// The export's name.
    pub name: String,
    /// Its description (empty when the server gave none).
    pub description: String,
}

/// The extents one meta context reported in a block status reply
/// ([`Handle::block_status_extents`], `AsyncHandle::block_status`; the
/// arguments of libnbd's `nbd_block_status_64` callback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextExtents {
    /// The meta context, e.g. `base:allocation`.
    pub context: String,
    /// The offset the extents start at (the request's offset).
    pub offset: u64,
    /// The extents: length and status flags (for `base:allocation`,
    /// `LIBNBD_STATE_HOLE` = 1, `LIBNBD_STATE_ZERO` = 2).
    pub extents: Vec<Extent64>,
}

/// A vector the callbacks push into and the caller takes at the end.
type Acc<T> = Arc<Mutex<Vec<T>>>;

fn collector<T>() -> (Acc<T>, Acc<T>) {
    let acc = Arc::new(Mutex::new(Vec::new()));
    (Arc::clone(&acc), acc)
}

fn take<T>(acc: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *acc.lock().unwrap_or_else(PoisonError::into_inner))
}

fn push<T>(acc: &Mutex<Vec<T>>, item: T) {
    acc.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(item);
}

impl Handle {
    /// The exports the server lists (`nbd_opt_list`, collected): option
    /// mode only, as [`Handle::opt_list`].
    pub fn opt_list_exports(&self) -> Result<Vec<Export>> {
        let (acc, cb) = collector();
        self.opt_list(List::new(move |name, description| {
            push(
                &cb,
                Export {
                    name: name.to_string(),
                    description: description.to_string(),
                },
            );
            0
        }))?;
        Ok(take(&acc))
    }

    /// The meta contexts the server has matching the requested ones
    /// (`nbd_opt_list_meta_context`, collected; all of them when none are
    /// requested). Option mode only.
    pub fn opt_list_meta_contexts(&self) -> Result<Vec<String>> {
        let (acc, cb) = collector();
        self.opt_list_meta_context(Context::new(move |name| {
            push(&cb, name.to_string());
            0
        }))?;
        Ok(take(&acc))
    }

    /// Selects the requested meta contexts for transmission and returns
    /// those the server agreed to (`nbd_opt_set_meta_context`, collected).
    /// Option mode only.
    pub fn opt_set_meta_contexts(&self) -> Result<Vec<String>> {
        let (acc, cb) = collector();
        self.opt_set_meta_context(Context::new(move |name| {
            push(&cb, name.to_string());
            0
        }))?;
        Ok(take(&acc))
    }

    /// The meta contexts requested with [`Handle::add_meta_context`]
    /// (`nbd_get_nr_meta_contexts` and `nbd_get_meta_context`).
    pub fn meta_contexts(&self) -> Vec<String> {
        self.lock().requested_meta_contexts().to_vec()
    }

    /// The status of `count` bytes at `offset` in each negotiated meta
    /// context (`nbd_block_status_64`, collected): one entry per context
    /// the server replied for. Flags: [`CmdFlag::REQ_ONE`].
    ///
    /// The server may describe less than `count` bytes (and with
    /// `REQ_ONE`, one extent); ask again from where its extents end.
    pub fn block_status_extents(
        &self,
        count: u64,
        offset: u64,
        flags: CmdFlag,
    ) -> Result<Vec<ContextExtents>> {
        let (acc, cb) = collector();
        let extent = Extent64Cb::new(move |context, offset, entries, _error| {
            push(
                &cb,
                ContextExtents {
                    context: context.to_string(),
                    offset,
                    extents: entries.to_vec(),
                },
            );
            0
        });
        self.block_status_64(count, offset, extent, flags)?;
        Ok(take(&acc))
    }
}
