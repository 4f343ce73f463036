//! The caller's buffer of a command, as the machine holds it from issue
//! to retirement: a raw pointer and a length, checked once at
//! construction (the one `unsafe` promise), then used through safe,
//! bounds-checked methods. Reads land straight in it: no copy, no
//! allocation.

use crate::callback::Chunk;

/// A command's buffer: read data goes into it, write data comes from it.
///
/// Not `Clone`: the machine holds one per command, so a slice handed out
/// by [`CallerBuf::slice_mut`] is the only way into the buffer while it
/// lives.
pub(super) struct CallerBuf {
    ptr: *mut u8,
    len: usize,
    /// Whether the caller lent it for writing (a read's destination).
    writable: bool,
}

impl CallerBuf {
    /// No buffer (a command without data, or one whose buffer its caller
    /// has taken back).
    pub(super) const fn none() -> CallerBuf {
        CallerBuf {
            ptr: std::ptr::null_mut(),
            len: 0,
            writable: false,
        }
    }

    /// The buffer of a command: a read's destination if `writable`, else
    /// a write's source.
    ///
    /// # Safety
    /// Unless `len` is 0 or `ptr` NULL, `ptr` must be valid for reads (and,
    /// if `writable`, writes) of `len` bytes, and nothing else may write
    /// (or, if `writable`, access) them, until this value is dropped or
    /// replaced: the command's life, as libnbd's callers promise.
    pub(super) unsafe fn new(ptr: *mut u8, len: usize, writable: bool) -> CallerBuf {
        if ptr.is_null() {
            // Nothing to point at: no byte is reachable.
            return CallerBuf {
                ptr,
                len: 0,
                writable,
            };
        }
        CallerBuf { ptr, len, writable }
    }

    /// The whole buffer, to be read (a write's data going out).
    pub(super) fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the buffer is valid for reads of `len` bytes while `self`
        // lives (constructor's contract); reads through a shared borrow of
        // `self` cannot overlap a `slice_mut` borrow.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Panics unless `[at, at + n)` lies inside the buffer.
    fn check(&self, at: usize, n: usize) {
        assert!(
            at <= self.len && n <= self.len - at,
            "range {at}+{n} outside a caller's buffer of {} bytes",
            self.len
        );
    }

    /// The bytes `[at, at + n)`, to be written (a read's buffer only).
    pub(super) fn slice_mut(&mut self, at: usize, n: usize) -> &mut [u8] {
        assert!(self.writable, "writing into a caller's read-only buffer");
        self.check(at, n);
        if n == 0 {
            return &mut [];
        }
        // SAFETY: the range is inside the buffer (checked), which is valid
        // for writes while `self` lives, and borrowed mutably through
        // `self` alone (constructor's contract, and `self` is not Clone).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), n) }
    }

    /// Copies `src` to `at`.
    pub(super) fn write_at(&mut self, at: usize, src: &[u8]) {
        self.slice_mut(at, src.len()).copy_from_slice(src);
    }

    /// Zeroes `[at, at + n)`.
    pub(super) fn zero_range(&mut self, at: usize, n: usize) {
        self.slice_mut(at, n).fill(0);
    }

    /// Shows `[at, at + n)` to a read's chunk callback (the bytes at the
    /// buffer's own address, as libnbd passes them; for `n` = 0, the
    /// address `at` names).
    pub(super) fn show_chunk(
        &self,
        cb: &mut Chunk,
        at: usize,
        n: usize,
        offset: u64,
        status: u32,
        error: &mut i32,
    ) -> i32 {
        self.check(at, n);
        let data = self.ptr.wrapping_add(at);
        // SAFETY: `data` is valid for reads of `n` bytes (checked, and the
        // constructor's contract); with `n` = 0 nothing is read.
        unsafe { cb.call(data, n, offset, status, error) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_checked_access() {
        let mut mem = [7u8; 8];
        // SAFETY: `mem` outlives `b` and is used only through it.
        let mut b = unsafe { CallerBuf::new(mem.as_mut_ptr(), mem.len(), true) };
        b.write_at(2, &[1, 2, 3]);
        b.zero_range(6, 2);
        assert_eq!(b.slice_mut(0, 8), &[7, 7, 1, 2, 3, 7, 0, 0]);
        assert_eq!(b.slice_mut(8, 0), &[] as &[u8]);
        b.slice_mut(0, 1)[0] = 9;
        assert_eq!(mem, [9, 7, 1, 2, 3, 7, 0, 0]);
    }

    #[test]
    fn out_of_range_panics() {
        let mut mem = [0u8; 4];
        // SAFETY: as above.
        let mut b = unsafe { CallerBuf::new(mem.as_mut_ptr(), mem.len(), true) };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.zero_range(2, 3)));
        assert!(r.is_err());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.slice_mut(5, 0).len()));
        assert!(r.is_err());
        let mut none = CallerBuf::none();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| none.zero_range(0, 1)));
        assert!(r.is_err());
    }

    #[test]
    fn read_only_buffer_refuses_writes() {
        let mem = [5u8; 4];
        // SAFETY: `mem` outlives `b` and nothing writes it.
        let mut b = unsafe { CallerBuf::new(mem.as_ptr().cast_mut(), mem.len(), false) };
        assert_eq!(b.as_slice().as_ptr(), mem.as_ptr());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.write_at(0, &[1])));
        assert!(r.is_err());
        assert_eq!(mem, [5; 4]);
    }

    #[test]
    fn chunk_callback_sees_the_buffer_itself() {
        let mut mem = *b"abcdef";
        let base = mem.as_ptr() as usize;
        // SAFETY: as above.
        let b = unsafe { CallerBuf::new(mem.as_mut_ptr(), mem.len(), true) };
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut cb = Chunk::new(move |data, offset, status, _| {
            s.lock().unwrap().push((data.to_vec(), offset, status));
            0
        });
        let mut err = 0;
        assert_eq!(b.show_chunk(&mut cb, 2, 3, 100, 1, &mut err), 0);
        assert_eq!(b.show_chunk(&mut cb, 5, 0, 103, 4, &mut err), 0);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(b"cde".to_vec(), 100, 1), (vec![], 103, 4)]
        );
        assert_eq!(b.as_slice().as_ptr() as usize, base);
    }
}
