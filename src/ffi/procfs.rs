// SPDX-License-Identifier: GPL-2.0

//! The /proc/net entries of a namespace; their contents come from [`crate::proc`].

use super::bindings as b;
use super::pernet::Net;
use crate::net_state::NetState;
use kernel::prelude::*;
use kernel::seq_file::SeqFile;

/// Creates /proc/net/kcm and /proc/net/kcm_stats in `net`.
pub(crate) fn create(net: Net) -> Result {
    // SAFETY: `net` is being set up and lives until `remove`; the show functions stay valid
    // while the module is loaded, and the entries are removed at namespace exit.
    kernel::error::to_result(unsafe {
        b::kcmrs_proc_create(net.as_ptr(), Some(show_kcm), Some(show_stats))
    })
}

/// Removes them; returns after every reader has left.
pub(crate) fn remove(net: Net) {
    // SAFETY: `create` succeeded for `net`.
    unsafe { b::kcmrs_proc_remove(net.as_ptr()) };
}

/// Runs `f` with the namespace state and the `seq_file` of a read of one of our entries.
///
/// # Safety
///
/// `seq` must be the `seq_file` of a read of an entry made by [`create`].
unsafe fn show(seq: *mut b::seq_file, f: fn(&NetState, &SeqFile) -> Result) -> c_int {
    // SAFETY: The entry belongs to a namespace whose state lives until `remove`, which waits
    // for this read; the proc core holds the namespace for the open file.
    let state = unsafe { Net::from_raw(b::kcmrs_seq_file_single_net(seq)) }.state();
    // SAFETY: `seq` is valid for the call; `SeqFile` wraps the same C type.
    let m = unsafe { SeqFile::from_raw(seq.cast()) };
    kernel::error::from_result(|| f(&state, m).map(|()| 0))
}

/// The show function of /proc/net/kcm.
///
/// # Safety
///
/// Called by the proc core only, for a read of the entry.
unsafe extern "C" fn show_kcm(seq: *mut b::seq_file, _v: *mut c_void) -> c_int {
    // SAFETY: As required by `show`.
    unsafe { show(seq, crate::proc::show_kcm) }
}

/// The show function of /proc/net/kcm_stats.
///
/// # Safety
///
/// Called by the proc core only, for a read of the entry.
unsafe extern "C" fn show_stats(seq: *mut b::seq_file, _v: *mut c_void) -> c_int {
    // SAFETY: As required by `show`.
    unsafe { show(seq, crate::proc::show_stats) }
}
