// SPDX-License-Identifier: GPL-2.0

//! The current task.

use super::bindings as b;

/// The current task has a fatal signal (it is being killed).
pub(crate) fn fatal_signal_pending() -> bool {
    // SAFETY: FFI call without preconditions; it reads the current task.
    unsafe { b::kcmrs_fatal_signal_pending() }
}
