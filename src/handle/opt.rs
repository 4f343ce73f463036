//! Option mode (negotiating by hand before transmission), meta contexts,
//! and the header style requested from the server.

use super::{run_until, Handle, Limits, INFO_STATES};
use crate::callback::{Completion, Context, List};
use crate::conn::{Conn, Perm, UserOption};
use crate::{Error, Result};

const NEGOTIATING: &[Perm] = &[Perm::Negotiating];

/// Runs a caller's option to its end and returns how it ended.
pub(super) fn run_option(
    c: &mut Conn,
    limits: Limits<'_>,
    option: UserOption,
    list: Option<List>,
    context: Option<Context>,
) -> Result<i32> {
    c.check_state(NEGOTIATING)?;
    c.start_user_option(option, None, list, context)?;
    run_until(c, limits, |c| !c.is_connecting())?;
    c.take_option_result()
        .unwrap_or_else(|| Err(Error::new(libc::EIO, "option did not complete")))
}

/// Starts a caller's option; its completion callback reports the end.
pub(super) fn start_option(
    c: &mut Conn,
    option: UserOption,
    completion: Option<Completion>,
    list: Option<List>,
    context: Option<Context>,
) -> Result<()> {
    c.check_state(NEGOTIATING)?;
    c.start_user_option(option, completion, list, context)
}

impl Handle {
    /// Stop after the first options of the handshake so the caller can
    /// negotiate with `opt_*` calls (default false).
    ///
    /// libnbd: `nbd_set_opt_mode`.
    pub fn set_opt_mode(&self, enable: bool) -> Result<()> {
        self.lock().set_opt_mode(enable)
    }

    /// Whether option mode is on.
    ///
    /// libnbd: `nbd_get_opt_mode`.
    pub fn opt_mode(&self) -> bool {
        self.lock().opt_mode()
    }

    /// Ends negotiation: asks for the export (`NBD_OPT_GO`) and enters
    /// transmission. On failure the handle stays negotiating.
    ///
    /// libnbd: `nbd_opt_go`.
    pub fn opt_go(&self) -> Result<()> {
        run_option(&mut self.lock(), self.limits(), UserOption::Go, None, None).map(drop)
    }

    /// Asks about the export (`NBD_OPT_INFO`) without entering transmission.
    ///
    /// libnbd: `nbd_opt_info`.
    pub fn opt_info(&self) -> Result<()> {
        run_option(
            &mut self.lock(),
            self.limits(),
            UserOption::Info,
            None,
            None,
        )
        .map(drop)
    }

    /// Ends the connection during negotiation (`NBD_OPT_ABORT`).
    ///
    /// libnbd: `nbd_opt_abort`.
    pub fn opt_abort(&self) -> Result<()> {
        run_option(
            &mut self.lock(),
            self.limits(),
            UserOption::Abort,
            None,
            None,
        )
        .map(drop)
    }

    /// Lists the server's exports, calling `list` for each; returns how many.
    ///
    /// libnbd: `nbd_opt_list`.
    pub fn opt_list(&self, list: List) -> Result<i32> {
        run_option(
            &mut self.lock(),
            self.limits(),
            UserOption::List,
            Some(list),
            None,
        )
    }

    /// Lists the meta contexts matching the requested ones; returns how many.
    ///
    /// libnbd: `nbd_opt_list_meta_context`.
    pub fn opt_list_meta_context(&self, context: Context) -> Result<i32> {
        let option = UserOption::ListMetaContext(None);
        run_option(&mut self.lock(), self.limits(), option, None, Some(context))
    }

    /// Lists the meta contexts matching `queries`; returns how many.
    ///
    /// libnbd: `nbd_opt_list_meta_context_queries`.
    pub fn opt_list_meta_context_queries(&self, queries: &[&str], context: Context) -> Result<i32> {
        let q = queries.iter().map(|s| s.to_string()).collect();
        let option = UserOption::ListMetaContext(Some(q));
        run_option(&mut self.lock(), self.limits(), option, None, Some(context))
    }

    /// Selects the requested meta contexts for transmission; returns how
    /// many the server agreed to.
    ///
    /// libnbd: `nbd_opt_set_meta_context`.
    pub fn opt_set_meta_context(&self, context: Context) -> Result<i32> {
        let option = UserOption::SetMetaContext(None);
        run_option(&mut self.lock(), self.limits(), option, None, Some(context))
    }

    /// Selects the meta contexts matching `queries`; returns how many.
    ///
    /// libnbd: `nbd_opt_set_meta_context_queries`.
    pub fn opt_set_meta_context_queries(&self, queries: &[&str], context: Context) -> Result<i32> {
        let q = queries.iter().map(|s| s.to_string()).collect();
        let option = UserOption::SetMetaContext(Some(q));
        run_option(&mut self.lock(), self.limits(), option, None, Some(context))
    }

    /// Asks for structured replies; true if the server agreed.
    ///
    /// libnbd: `nbd_opt_structured_reply`.
    pub fn opt_structured_reply(&self) -> Result<bool> {
        run_option(
            &mut self.lock(),
            self.limits(),
            UserOption::StructuredReply,
            None,
            None,
        )
        .map(|r| r == 1)
    }

    /// Asks for extended headers; true if the server agreed.
    ///
    /// libnbd: `nbd_opt_extended_headers`.
    pub fn opt_extended_headers(&self) -> Result<bool> {
        run_option(
            &mut self.lock(),
            self.limits(),
            UserOption::ExtendedHeaders,
            None,
            None,
        )
        .map(|r| r == 1)
    }

    /// Starts `NBD_OPT_GO`; `completion` reports its end.
    ///
    /// libnbd: `nbd_aio_opt_go`.
    pub fn aio_opt_go(&self, completion: Option<Completion>) -> Result<()> {
        start_option(&mut self.lock(), UserOption::Go, completion, None, None)
    }

    /// Starts `NBD_OPT_INFO`.
    ///
    /// libnbd: `nbd_aio_opt_info`.
    pub fn aio_opt_info(&self, completion: Option<Completion>) -> Result<()> {
        start_option(&mut self.lock(), UserOption::Info, completion, None, None)
    }

    /// Starts `NBD_OPT_ABORT`.
    ///
    /// libnbd: `nbd_aio_opt_abort`.
    pub fn aio_opt_abort(&self) -> Result<()> {
        start_option(&mut self.lock(), UserOption::Abort, None, None, None)
    }

    /// Starts `NBD_OPT_LIST`.
    ///
    /// libnbd: `nbd_aio_opt_list`.
    pub fn aio_opt_list(&self, list: List, completion: Option<Completion>) -> Result<()> {
        start_option(
            &mut self.lock(),
            UserOption::List,
            completion,
            Some(list),
            None,
        )
    }

    /// Starts `NBD_OPT_LIST_META_CONTEXT` (with `queries`, or the requested contexts).
    ///
    /// libnbd: `nbd_aio_opt_list_meta_context`.
    pub fn aio_opt_list_meta_context(
        &self,
        queries: Option<&[&str]>,
        context: Context,
        completion: Option<Completion>,
    ) -> Result<()> {
        let q = queries.map(|q| q.iter().map(|s| s.to_string()).collect());
        let option = UserOption::ListMetaContext(q);
        start_option(&mut self.lock(), option, completion, None, Some(context))
    }

    /// Starts `NBD_OPT_SET_META_CONTEXT` (with `queries`, or the requested contexts).
    ///
    /// libnbd: `nbd_aio_opt_set_meta_context`.
    pub fn aio_opt_set_meta_context(
        &self,
        queries: Option<&[&str]>,
        context: Context,
        completion: Option<Completion>,
    ) -> Result<()> {
        let q = queries.map(|q| q.iter().map(|s| s.to_string()).collect());
        let option = UserOption::SetMetaContext(q);
        start_option(&mut self.lock(), option, completion, None, Some(context))
    }

    /// Starts `NBD_OPT_STRUCTURED_REPLY`.
    ///
    /// libnbd: `nbd_aio_opt_structured_reply`.
    pub fn aio_opt_structured_reply(&self, completion: Option<Completion>) -> Result<()> {
        let option = UserOption::StructuredReply;
        start_option(&mut self.lock(), option, completion, None, None)
    }

    /// Starts `NBD_OPT_EXTENDED_HEADERS`.
    ///
    /// libnbd: `nbd_aio_opt_extended_headers`.
    pub fn aio_opt_extended_headers(&self, completion: Option<Completion>) -> Result<()> {
        let option = UserOption::ExtendedHeaders;
        start_option(&mut self.lock(), option, completion, None, None)
    }

    // ---- meta contexts ------------------------------------------------------

    /// Adds a meta context to request (e.g. `base:allocation`).
    ///
    /// libnbd: `nbd_add_meta_context`.
    pub fn add_meta_context(&self, name: &str) -> Result<()> {
        self.lock().add_meta_context(name)
    }

    /// How many meta contexts are requested.
    ///
    /// libnbd: `nbd_get_nr_meta_contexts`.
    pub fn nr_meta_contexts(&self) -> usize {
        self.lock().requested_meta_contexts().len()
    }

    /// The `i`th requested meta context.
    ///
    /// libnbd: `nbd_get_meta_context`.
    pub fn meta_context(&self, i: usize) -> Result<String> {
        self.lock()
            .requested_meta_contexts()
            .get(i)
            .cloned()
            .ok_or_else(|| Error::new(libc::EINVAL, "meta context request out of range"))
    }

    /// Forgets the requested meta contexts.
    ///
    /// libnbd: `nbd_clear_meta_contexts`.
    pub fn clear_meta_contexts(&self) -> Result<()> {
        self.lock().clear_meta_contexts()
    }

    /// Whether the server agreed to meta context `name`.
    ///
    /// libnbd: `nbd_can_meta_context`.
    pub fn can_meta_context(&self, name: &str) -> Result<bool> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        c.can_meta_context(name)
    }

    /// Whether GO/INFO ask for the requested meta contexts first (default true).
    ///
    /// libnbd: `nbd_set_request_meta_context`.
    pub fn set_request_meta_context(&self, request: bool) -> Result<()> {
        self.lock().set_request_meta_context(request)
    }

    /// See [`Handle::set_request_meta_context`].
    ///
    /// libnbd: `nbd_get_request_meta_context`.
    pub fn request_meta_context(&self) -> bool {
        self.lock().request_meta_context()
    }

    // ---- header style ---------------------------------------------------------

    /// Whether to ask for extended (64-bit) headers (default true).
    ///
    /// libnbd: `nbd_set_request_extended_headers`.
    pub fn set_request_extended_headers(&self, request: bool) -> Result<()> {
        self.lock().set_request_extended_headers(request)
    }

    /// See [`Handle::set_request_extended_headers`].
    ///
    /// libnbd: `nbd_get_request_extended_headers`.
    pub fn request_extended_headers(&self) -> bool {
        self.lock().request_extended_headers()
    }

    /// Whether the server agreed to extended headers.
    ///
    /// libnbd: `nbd_get_extended_headers_negotiated`.
    pub fn extended_headers_negotiated(&self) -> Result<bool> {
        let c = self.lock();
        c.check_state(INFO_STATES)?;
        Ok(c.extended_headers())
    }
}
