// SPDX-License-Identifier: GPL-2.0

//! [`NetState`]: what kcm-rs keeps for one network namespace.

use crate::mux::Mux;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

/// The multiplexors of one network namespace.
///
/// Sockets of different namespaces never share a multiplexor: a multiplexor is created in the
/// namespace of its first socket and clones stay in it.
#[pin_data]
pub(crate) struct NetState {
    /// Every live multiplexor of the namespace, for /proc/net/kcm.
    #[pin]
    muxes: Mutex<KVec<Arc<Mux>>>,
}

impl NetState {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                muxes <- kernel::new_mutex!(KVec::new(), "NetState::muxes"),
            }),
            GFP_KERNEL,
        )
    }

    /// Adds a new multiplexor.
    pub(crate) fn add_mux(&self, mux: Arc<Mux>) -> Result {
        self.muxes.lock().push(mux, GFP_KERNEL)?;
        Ok(())
    }

    /// Removes a multiplexor whose last socket has gone.
    pub(crate) fn remove_mux(&self, mux: &Mux) {
        self.muxes.lock().retain(|m| !core::ptr::eq(&**m, mux));
    }

    /// How many multiplexors the namespace has.
    pub(crate) fn mux_count(&self) -> usize {
        self.muxes.lock().len()
    }

    /// The namespace is going away. Every socket holds a reference on its namespace, so no
    /// multiplexor can be left; one that is would be a leak of ours.
    pub(crate) fn namespace_exit(&self) {
        let left = self.mux_count();
        if left != 0 {
            pr_err!("namespace exit with {} multiplexors left\n", left);
        }
    }
}
