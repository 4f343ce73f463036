//! The exported C calls and the libnbd version node each belongs to.
//!
//! This table is the one source of truth for the ABI: `build.rs` derives the
//! linker version script and the `LIBNBD_HAVE_NBD_*` macros from it, and the
//! tests check the built library's symbols against it.

/// One exported C call.
pub struct Symbol {
    /// The C name, e.g. `nbd_pread`.
    pub name: &'static str,
    /// The version node, e.g. `LIBNBD_1.0`.
    pub node: &'static str,
}

/// The version nodes in order; each inherits the one before it.
pub const NODES: &[&str] = &["LIBNBD_1.0"];

/// Every exported call, grouped by node.
pub const SYMBOLS: &[Symbol] = &[
    Symbol { name: "nbd_create", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_close", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_error", node: "LIBNBD_1.0" },
    Symbol { name: "nbd_get_errno", node: "LIBNBD_1.0" },
];
