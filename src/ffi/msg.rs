// SPDX-License-Identifier: GPL-2.0

//! The `struct msghdr` of sendmsg and recvmsg.

use super::bindings as b;
use super::skb::Skb;
use kernel::prelude::*;

/// The message of a recvmsg call.
///
/// # Invariants
///
/// `self.0` is the `msghdr` the socket core passed to recvmsg, valid until it returns.
pub(crate) struct RecvMsg(*mut b::msghdr);

impl RecvMsg {
    /// # Safety
    ///
    /// `msg` must be recvmsg's `msghdr`, and the value must not outlive the call.
    pub(crate) unsafe fn from_raw(msg: *mut b::msghdr) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self(msg)
    }

    /// Copies `len` bytes of `skb` from `offset` to the user's buffers.
    pub(crate) fn copy_from(&mut self, skb: &Skb, offset: usize, len: usize) -> Result {
        // SAFETY: `skb` is valid and its message holds `offset + len` bytes (callers check); the
        // iterator is the call's.
        let ret = unsafe {
            b::skb_copy_datagram_iter(
                skb.as_ptr(),
                (skb.data_start() + offset) as i32,
                &raw mut (*self.0).msg_iter,
                len as i32,
            )
        };
        kernel::error::to_result(ret)
    }

    /// Sets MSG_EOR (end of the message) and, with `truncated`, MSG_TRUNC.
    pub(crate) fn set_end_of_message(&mut self, truncated: bool) {
        let mut flags = b::MSG_EOR;
        if truncated {
            flags |= b::MSG_TRUNC;
        }
        // SAFETY: By the type invariant, the msghdr is valid for writes.
        unsafe { (*self.0).msg_flags |= flags };
    }
}

/// The message of a sendmsg call.
///
/// # Invariants
///
/// `self.0` is the `msghdr` the socket core passed to sendmsg, valid until it returns.
pub(crate) struct SendMsg(*mut b::msghdr);

impl SendMsg {
    /// # Safety
    ///
    /// `msg` must be sendmsg's `msghdr`, and the value must not outlive the call.
    pub(crate) unsafe fn from_raw(msg: *mut b::msghdr) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self(msg)
    }

    pub(crate) fn flags(&self) -> u32 {
        // SAFETY: By the type invariant, the msghdr is valid.
        unsafe { (*self.0).msg_flags }
    }

    /// Bytes the user passed.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: By the type invariant, the msghdr is valid.
        unsafe { b::kcmrs_msg_data_left(self.0) }
    }

    /// Appends the user's next `n` bytes to `dst`; EFAULT when the buffers end early (a bad
    /// pointer), ENOMEM without memory, and `dst` is then as it was.
    pub(crate) fn append_to(&mut self, dst: &mut KVVec<u8>, n: usize) -> Result {
        dst.reserve(n, GFP_KERNEL_ACCOUNT)?;
        let spare = dst.spare_capacity_mut();
        // SAFETY: `spare` is valid for writes of at least `n` bytes (reserved above); the
        // iterator is the call's.
        let copied = unsafe {
            b::kcmrs_copy_from_iter(spare.as_mut_ptr().cast(), n, &raw mut (*self.0).msg_iter)
        };
        if copied != n {
            return Err(EFAULT);
        }
        // SAFETY: The `n` bytes past the length were just written.
        unsafe { dst.inc_len(n) };
        Ok(())
    }
}
