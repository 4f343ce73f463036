//! The exported C calls and the libnbd version node each belongs to.
//!
//! This table is the one source of truth for the ABI: `build.rs` derives the
//! linker version script and the `LIBNBD_HAVE_NBD_*` macros from it, and the
//! tests check the built library's symbols against it.
//!
//! It lists every call of libnbd 1.22 under the node of the release that
//! first had it.  Nodes up to `LIBNBD_1.12` match the symbol versions of
//! Debian's libnbd.so.0 (1.14); releases 1.10, 1.14 and 1.20 added no calls,
//! so they have no node.

/// One exported C call.
pub struct Symbol {
    /// The C name, e.g. `nbd_pread`.
    pub name: &'static str,
    /// The version node, e.g. `LIBNBD_1.0`.
    pub node: &'static str,
}

/// Pointer parameters that may be NULL: (call, 1-based positions). As in
/// libnbd's header, every other pointer parameter of every call is declared
/// non-NULL: `build.rs` lists them in the call's `LIBNBD_ATTRIBUTE_NONNULL`,
/// so C compilers warn (`-Wnonnull`) when a program passes NULL there.
pub const NULLABLE_PARAMS: &[(&str, &[usize])] = &[
    ("nbd_close", &[1]),
    ("rnbd_multi_conn_connect", &[3]),
    ("rnbd_multi_conn_close", &[1]),
];

/// Calls whose result the caller releases with another call of the library:
/// (call, deallocator). `build.rs` declares them with
/// `LIBNBD_ATTRIBUTE_ALLOC_DEALLOC (deallocator)`, the deallocator coming
/// earlier in [`SYMBOLS`]. Calls returning `char *` are released with
/// `free`, and get `LIBNBD_ATTRIBUTE_ALLOC_DEALLOC (__builtin_free)` without
/// being listed here.
pub const DEALLOCATORS: &[(&str, &str)] = &[
    ("nbd_create", "nbd_close"),
    ("rnbd_multi_conn_connect_uri", "rnbd_multi_conn_close"),
    ("rnbd_multi_conn_connect", "rnbd_multi_conn_close"),
];

/// The version nodes in order; each inherits the one before it.
pub const NODES: &[&str] = &[
    "LIBNBD_1.0",
    "LIBNBD_1.2",
    "LIBNBD_1.4",
    "LIBNBD_1.6",
    "LIBNBD_1.8",
    "LIBNBD_1.12",
    "LIBNBD_1.16",
    "LIBNBD_1.18",
    "LIBNBD_1.22",
];

/// Every exported call, grouped by node.
#[rustfmt::skip]
pub const SYMBOLS: &[Symbol] = &[
    // LIBNBD_1.0
    // nbd_close first: nbd_create's header attribute names it.
    Symbol { name: "nbd_close", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_create", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_error", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_errno", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_set_debug", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_debug", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_set_debug_callback", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_clear_debug_callback", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_set_handle_name", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_handle_name", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_set_export_name", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_export_name", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_set_tls", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_tls", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_set_tls_certificates", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_set_tls_verify_peer", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_tls_verify_peer", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_set_tls_username", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_tls_username", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_set_tls_psk_file", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_add_meta_context", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_connect_uri", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_connect_unix", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_connect_tcp", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_connect_command", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_is_read_only", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_can_flush", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_can_fua", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_is_rotational", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_can_trim", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_can_zero", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_can_df", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_can_multi_conn", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_can_cache", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_can_meta_context", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_size", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_pread", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_pread_structured", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_pwrite", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_shutdown", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_flush", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_trim", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_cache", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_zero", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_block_status", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_poll", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_connect", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_connect_uri", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_connect_unix", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_connect_tcp", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_connect_command", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_pread", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_pread_structured", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_pwrite", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_disconnect", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_flush", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_trim", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_cache", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_zero", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_block_status", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_get_fd", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_get_direction", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_notify_read", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_notify_write", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_is_created", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_is_connecting", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_is_ready", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_is_processing", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_is_dead", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_is_closed", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_command_completed", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_peek_command_completed", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_aio_in_flight", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_connection_state", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_package_name", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_version", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_kill_subprocess", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_supports_tls", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_supports_uri", node: "LIBNBD_1.0" },

    // LIBNBD_1.2
    Symbol { name: "nbd_get_tls_negotiated", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_set_request_structured_replies", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_get_request_structured_replies", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_get_structured_replies_negotiated", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_set_handshake_flags", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_get_handshake_flags", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_set_uri_allow_transports", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_set_uri_allow_tls", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_set_uri_allow_local_file", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_connect_vsock", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_connect_socket", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_connect_systemd_socket_activation", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_can_fast_zero", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_get_protocol", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_aio_connect_vsock", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_aio_connect_socket", node: "LIBNBD_1.2" },
    Symbol { name: "nbd_aio_connect_systemd_socket_activation", node: "LIBNBD_1.2" },

    // LIBNBD_1.4
    Symbol { name: "nbd_set_full_info", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_get_full_info", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_get_canonical_export_name", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_get_export_description", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_set_opt_mode", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_get_opt_mode", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_opt_go", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_opt_abort", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_opt_list", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_opt_info", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_get_block_size", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_aio_opt_go", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_aio_opt_abort", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_aio_opt_list", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_aio_opt_info", node: "LIBNBD_1.4" },
    Symbol { name: "nbd_aio_is_negotiating", node: "LIBNBD_1.4" },

    // LIBNBD_1.6
    Symbol { name: "nbd_set_strict_mode", node: "LIBNBD_1.6" },
    Symbol { name: "nbd_get_strict_mode", node: "LIBNBD_1.6" },
    Symbol { name: "nbd_opt_list_meta_context", node: "LIBNBD_1.6" },
    Symbol { name: "nbd_get_nr_meta_contexts", node: "LIBNBD_1.6" },
    Symbol { name: "nbd_get_meta_context", node: "LIBNBD_1.6" },
    Symbol { name: "nbd_clear_meta_contexts", node: "LIBNBD_1.6" },
    Symbol { name: "nbd_aio_opt_list_meta_context", node: "LIBNBD_1.6" },

    // LIBNBD_1.8
    Symbol { name: "nbd_set_private_data", node: "LIBNBD_1.8" },
    Symbol { name: "nbd_get_private_data", node: "LIBNBD_1.8" },
    Symbol { name: "nbd_get_uri", node: "LIBNBD_1.8" },

    // LIBNBD_1.12
    Symbol { name: "nbd_set_request_block_size", node: "LIBNBD_1.12" },
    Symbol { name: "nbd_get_request_block_size", node: "LIBNBD_1.12" },
    Symbol { name: "nbd_set_pread_initialize", node: "LIBNBD_1.12" },
    Symbol { name: "nbd_get_pread_initialize", node: "LIBNBD_1.12" },

    // LIBNBD_1.16
    Symbol { name: "nbd_stats_bytes_sent", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_stats_chunks_sent", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_stats_bytes_received", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_stats_chunks_received", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_set_request_meta_context", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_get_request_meta_context", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_opt_starttls", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_opt_structured_reply", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_opt_list_meta_context_queries", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_opt_set_meta_context", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_opt_set_meta_context_queries", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_set_socket_activation_name", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_get_socket_activation_name", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_poll2", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_aio_opt_starttls", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_aio_opt_structured_reply", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_aio_opt_list_meta_context_queries", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_aio_opt_set_meta_context", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_aio_opt_set_meta_context_queries", node: "LIBNBD_1.16" },
    Symbol { name: "nbd_supports_vsock", node: "LIBNBD_1.16" },

    // LIBNBD_1.18
    Symbol { name: "nbd_set_request_extended_headers", node: "LIBNBD_1.18" },
    Symbol { name: "nbd_get_request_extended_headers", node: "LIBNBD_1.18" },
    Symbol { name: "nbd_get_extended_headers_negotiated", node: "LIBNBD_1.18" },
    Symbol { name: "nbd_opt_extended_headers", node: "LIBNBD_1.18" },
    Symbol { name: "nbd_can_block_status_payload", node: "LIBNBD_1.18" },
    Symbol { name: "nbd_block_status_64", node: "LIBNBD_1.18" },
    Symbol { name: "nbd_block_status_filter", node: "LIBNBD_1.18" },
    Symbol { name: "nbd_aio_opt_extended_headers", node: "LIBNBD_1.18" },
    Symbol { name: "nbd_aio_block_status_64", node: "LIBNBD_1.18" },
    Symbol { name: "nbd_aio_block_status_filter", node: "LIBNBD_1.18" },

    // LIBNBD_1.22
    Symbol { name: "nbd_set_tls_hostname", node: "LIBNBD_1.22" },
    Symbol { name: "nbd_get_tls_hostname", node: "LIBNBD_1.22" },
    Symbol { name: "nbd_is_uri", node: "LIBNBD_1.22" },
    Symbol { name: "nbd_get_subprocess_pid", node: "LIBNBD_1.22" },
];

/// The version node of the calls beyond libnbd (`include/libnbd-ext.h`,
/// prefix `rnbd_`). It inherits no `LIBNBD_*` node, so libnbd's chain stays
/// exactly libnbd's.
pub const EXT_NODES: &[&str] = &["RNBD_1.0"];

/// The calls beyond libnbd, declared in `include/libnbd-ext.h` with their
/// `RNBD_HAVE_*` macros, never in `libnbd.h`.
#[rustfmt::skip]
pub const EXT_SYMBOLS: &[Symbol] = &[
    Symbol { name: "rnbd_set_tls_ca_pem", node: "RNBD_1.0" },
    Symbol { name: "rnbd_set_tls_crl_pem", node: "RNBD_1.0" },
    Symbol { name: "rnbd_set_tls_client_pem", node: "RNBD_1.0" },
    Symbol { name: "rnbd_set_tls_psk", node: "RNBD_1.0" },
    Symbol { name: "rnbd_set_tls_key_password", node: "RNBD_1.0" },
    Symbol { name: "rnbd_connect_command_env", node: "RNBD_1.0" },
    Symbol { name: "rnbd_aio_connect_command_env", node: "RNBD_1.0" },
    Symbol { name: "rnbd_set_capture_stderr", node: "RNBD_1.0" },
    Symbol { name: "rnbd_get_capture_stderr", node: "RNBD_1.0" },
    Symbol { name: "rnbd_get_subprocess_stderr", node: "RNBD_1.0" },
    Symbol { name: "rnbd_set_close_waits_for_subprocess", node: "RNBD_1.0" },
    Symbol { name: "rnbd_get_close_waits_for_subprocess", node: "RNBD_1.0" },
    Symbol { name: "rnbd_set_ip_family", node: "RNBD_1.0" },
    Symbol { name: "rnbd_get_ip_family", node: "RNBD_1.0" },
    Symbol { name: "rnbd_set_ready_callback", node: "RNBD_1.0" },
    Symbol { name: "rnbd_aio_run", node: "RNBD_1.0" },
    Symbol { name: "rnbd_set_timeout", node: "RNBD_1.0" },
    Symbol { name: "rnbd_get_timeout", node: "RNBD_1.0" },
    Symbol { name: "rnbd_set_thread_deadline", node: "RNBD_1.0" },
    Symbol { name: "rnbd_clear_thread_deadline", node: "RNBD_1.0" },
    Symbol { name: "rnbd_cancel_waits", node: "RNBD_1.0" },
    // Multi-connection I/O; rnbd_multi_conn_close first: the connect
    // calls' header attribute names it.
    Symbol { name: "rnbd_multi_conn_close", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_connect_uri", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_connect", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_connections", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_get_size", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_is_read_only", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_can_flush", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_can_fua", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_can_trim", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_can_zero", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_can_cache", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_can_multi_conn", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_pread", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_pwrite", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_flush", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_trim", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_zero", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_cache", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_shutdown", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_aio_pread", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_aio_pwrite", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_aio_flush", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_aio_trim", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_aio_zero", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_aio_command_completed", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_aio_in_flight", node: "RNBD_1.0" },
    Symbol { name: "rnbd_multi_conn_poll", node: "RNBD_1.0" },
];
