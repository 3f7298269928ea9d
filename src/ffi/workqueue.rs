// SPDX-License-Identifier: GPL-2.0

//! The workqueue of kcm-rs. Module exit destroys it, which waits for every queued item, so no
//! work of ours runs after the module is gone.

use super::bindings as b;
use super::StaticCObject;
use kernel::prelude::*;
use kernel::workqueue::Queue;

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
