// SPDX-License-Identifier: GPL-2.0

//! Waiting for a condition within a socket timeout (SO_SNDTIMEO), as the senders do.

use kernel::prelude::*;
use kernel::sync::lock::{Backend, Guard};
use kernel::sync::{CondVar, CondVarTimeoutResult};

/// Sleeps once on `cv`, with `guard` released, for at most the `*timeo` jiffies left, and
/// updates `*timeo`. EAGAIN at once for `nonblock` or when no time is left; ERESTARTSYS on a
/// signal. The caller checks its condition again after `Ok`.
pub(crate) fn wait_within<T: ?Sized, B: Backend>(
    cv: &CondVar,
    guard: &mut Guard<'_, T, B>,
    nonblock: bool,
    timeo: &mut isize,
) -> Result {
    if nonblock || *timeo <= 0 {
        return Err(EAGAIN);
    }
    let wait = usize::try_from(*timeo).unwrap_or(0);
    match cv.wait_interruptible_timeout(guard, wait) {
        CondVarTimeoutResult::Timeout => *timeo = 0,
        CondVarTimeoutResult::Woken { jiffies } => {
            *timeo = isize::try_from(jiffies).unwrap_or(isize::MAX)
        }
        CondVarTimeoutResult::Signal { .. } => return Err(ERESTARTSYS),
    }
    Ok(())
}
