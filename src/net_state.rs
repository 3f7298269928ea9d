// SPDX-License-Identifier: GPL-2.0

//! [`NetState`]: what kcm-rs keeps for one network namespace.

use crate::mux::Mux;
use crate::stats::{MuxStats, PsockStats};
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
    /// Sums of the multiplexors that ended, and of their psocks, for /proc/net/kcm_stats.
    departed_muxes: MuxStats,
    departed_psocks: PsockStats,
}

impl NetState {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                muxes <- kernel::new_mutex!(KVec::new(), "NetState::muxes"),
                departed_muxes: MuxStats::default(),
                departed_psocks: PsockStats::default(),
            }),
            GFP_KERNEL,
        )
    }

    /// Adds a new multiplexor.
    pub(crate) fn add_mux(&self, mux: Arc<Mux>) -> Result {
        self.muxes.lock().push(mux, GFP_KERNEL)?;
        Ok(())
    }

    /// Removes a multiplexor whose last socket has gone, keeping its counters.
    pub(crate) fn remove_mux(&self, mux: &Mux, stats: &MuxStats, psocks: &PsockStats) {
        stats.add_to(&self.departed_muxes);
        psocks.add_to(&self.departed_psocks);
        self.muxes.lock().retain(|m| !core::ptr::eq(&**m, mux));
    }

    /// The live multiplexors, for /proc (taken so that no multiplexor lock is taken under
    /// `NetState::muxes`).
    pub(crate) fn muxes(&self) -> Result<KVec<Arc<Mux>>> {
        let muxes = self.muxes.lock();
        let mut copy = KVec::with_capacity(muxes.len(), GFP_KERNEL)?;
        for m in muxes.iter() {
            copy.push(m.clone(), GFP_KERNEL)?;
        }
        Ok(copy)
    }

    pub(crate) fn departed_muxes(&self) -> &MuxStats {
        &self.departed_muxes
    }

    pub(crate) fn departed_psocks(&self) -> &PsockStats {
        &self.departed_psocks
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
