// SPDX-License-Identifier: GPL-2.0

//! [`BpfProg`]: a reference on a BPF_PROG_TYPE_SOCKET_FILTER program, the message parser.

use super::bindings as b;
use super::skb::Skb;
use kernel::prelude::*;

/// A socket-filter program.
///
/// # Invariants
///
/// `self.0` is a program of type BPF_PROG_TYPE_SOCKET_FILTER that we hold one reference of.
pub(crate) struct BpfProg(core::ptr::NonNull<b::bpf_prog>);

// SAFETY: Programs are reference counted and may be run and put from any thread.
unsafe impl Send for BpfProg {}
// SAFETY: Running a program does not change it.
unsafe impl Sync for BpfProg {}

impl BpfProg {
    /// The program of `fd`: EBADF when `fd` is not a BPF program, EINVAL when it is of
    /// another type (as net/kcm).
    pub(crate) fn get_socket_filter(fd: i32) -> Result<Self> {
        // SAFETY: FFI call; the helper checks `fd`.
        let prog = unsafe { b::kcmrs_bpf_prog_get_socket_filter(fd) };
        let prog = kernel::error::from_err_ptr(prog)?;
        // INVARIANT: `bpf_prog_get_type` returned a reference on a program of that type.
        core::ptr::NonNull::new(prog).map(Self).ok_or(EBADF)
    }

    /// Runs the program over `skb`: 0 for "need more bytes", a negative errno, or the length
    /// of the message that starts at the buffer's first byte.
    pub(crate) fn run(&self, skb: &Skb) -> i32 {
        // SAFETY: The program and the buffer are valid by their invariants.
        unsafe { b::kcmrs_bpf_prog_run(self.0.as_ptr(), skb.as_ptr()) as i32 }
    }
}

impl Drop for BpfProg {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, we hold one reference.
        unsafe { b::bpf_prog_put(self.0.as_ptr()) };
    }
}
