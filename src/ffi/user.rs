// SPDX-License-Identifier: GPL-2.0

//! Copies between user memory (ioctl arguments, socket options) and the kernel.

use super::bindings as b;
use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

/// Reads the `int` at the start of a user structure (`kcm_unattach`, `kcm_clone`).
pub(crate) fn read_ioctl_ints<const N: usize>(arg: usize) -> Result<[i32; N]> {
    let mut raw = [[0u8; 4]; N];
    let mut reader = UserSlice::new(UserPtr::from_addr(arg), 4 * N).reader();
    for word in raw.iter_mut() {
        reader.read_slice(word)?;
    }
    Ok(raw.map(i32::from_ne_bytes))
}

/// Writes one `int` to a user structure (`kcm_clone`).
pub(crate) fn write_ioctl_int(arg: usize, value: i32) -> Result {
    UserSlice::new(UserPtr::from_addr(arg), 4)
        .writer()
        .write_slice(&value.to_ne_bytes())
}

/// Reads an `int` socket option value from a `sockptr_t` (user or kernel memory).
pub(crate) fn read_sockopt_int(optval: b::sockptr_t) -> Result<i32> {
    let mut value: i32 = 0;
    // SAFETY: `value` is valid for writes of 4 bytes; the helper checks `optval` itself.
    let ret = unsafe {
        b::kcmrs_copy_from_sockptr((&raw mut value).cast(), optval, core::mem::size_of::<i32>())
    };
    kernel::error::to_result(ret)?;
    Ok(value)
}

/// The `sockopt_t` that `getsockopt_iter` fills.
///
/// # Invariants
///
/// `self.0` is valid for reads and writes for the lifetime of the value.
pub(crate) struct SockoptOut(*mut b::sockopt_t);

impl SockoptOut {
    /// # Safety
    ///
    /// `opt` must be the `sockopt_t` the socket core passed to `getsockopt_iter`, valid until
    /// that call returns, and the returned value must not outlive that call.
    pub(crate) unsafe fn from_raw(opt: *mut b::sockopt_t) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self(opt)
    }

    /// The length the caller offered (`*optlen`).
    pub(crate) fn offered_len(&self) -> i32 {
        // SAFETY: By the type invariant, `self.0` is valid for reads.
        unsafe { (*self.0).optlen }
    }

    /// Copies `bytes` out and sets the returned length.
    pub(crate) fn put(&mut self, bytes: &[u8]) -> Result {
        // SAFETY: By the type invariant, `self.0` is valid for writes; `bytes` is valid for reads
        // of its length.
        let copied = unsafe {
            (*self.0).optlen = bytes.len() as i32;
            b::kcmrs_copy_to_iter(
                bytes.as_ptr().cast(),
                bytes.len(),
                &raw mut (*self.0).iter_out,
            )
        };
        if copied != bytes.len() {
            return Err(EFAULT);
        }
        Ok(())
    }
}
