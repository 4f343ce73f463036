//! The safe API.
/// An NBD client handle.
pub struct Handle {}
