// SPDX-License-Identifier: GPL-2.0

//! The workqueue of kcm-rs. Module exit destroys it, which waits for every queued item, so no
//! work of ours runs after the module is gone.

use super::bindings as b;
use super::StaticCObject;
use kernel::prelude::*;
use kernel::sync::atomic::{Atomic, Relaxed};
use kernel::workqueue::{Queue, RawDelayedWorkItem};

/// Delayed work items whose timer may not have fired yet. Their timers would queue work on a
/// destroyed queue, so module exit waits for this to reach zero before destroying it.
static ARMED_TIMERS: Atomic<i64> = Atomic::new(0);

static QUEUE: StaticCObject<*mut b::workqueue_struct> = StaticCObject::new(core::ptr::null_mut());

/// Ownership of the workqueue; destroys it on drop.
pub(crate) struct OwnedQueue(());

impl OwnedQueue {
    pub(crate) fn create() -> Result<Self> {
        // SAFETY: FFI call without preconditions.
        let wq = unsafe { b::kcmrs_alloc_workqueue() };
        if wq.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: Module init: nothing else uses `QUEUE` yet.
        unsafe { *QUEUE.get() = wq };
        Ok(Self(()))
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // No socket exists, so no timer is armed again; each fires within a second.
        while ARMED_TIMERS.load(Relaxed) > 0 {
            kernel::time::delay::fsleep(kernel::time::Delta::from_millis(10));
        }
        // SAFETY: Module exit: no socket exists, so nothing queues more work; destroying
        // drains what is queued.
        unsafe { b::destroy_workqueue(*QUEUE.get()) };
    }
}

/// The workqueue.
pub(crate) fn queue() -> &'static Queue {
    // SAFETY: Set at module init before any socket (and so any work) exists; valid until exit,
    // which runs only after every socket is gone.
    unsafe { Queue::from_raw((*QUEUE.get()).cast()) }
}

/// Queues `w` after `delay` jiffies; false when it was already queued. The item's `run` must
/// call [`timer_fired`] first.
pub(crate) fn enqueue_delayed<W, const ID: u64>(w: W, delay: kernel::time::Jiffies) -> bool
where
    W: RawDelayedWorkItem<ID, EnqueueOutput = core::result::Result<(), W>> + Send + 'static,
{
    ARMED_TIMERS.add(1, Relaxed);
    let queued = queue().enqueue_delayed(w, delay).is_ok();
    if !queued {
        ARMED_TIMERS.add(-1, Relaxed);
    }
    queued
}

/// A delayed item's timer fired: its work is queued (and destroying the queue waits for it).
pub(crate) fn timer_fired() {
    ARMED_TIMERS.add(-1, Relaxed);
}
