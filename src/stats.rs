// SPDX-License-Identifier: GPL-2.0

//! Counters shown by /proc/net/kcm and /proc/net/kcm_stats.

use kernel::sync::atomic::{Atomic, Relaxed};

/// A statistics counter; relaxed, as each is read alone.
pub(crate) struct Counter(Atomic<u64>);

impl Counter {
    pub(crate) const fn new() -> Self {
        Self(Atomic::new(0))
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.add(n, Relaxed);
    }

    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// Messages and their bytes in one direction.
#[derive(Default)]
pub(crate) struct Traffic {
    pub(crate) msgs: Counter,
    pub(crate) bytes: Counter,
}

impl Traffic {
    pub(crate) fn count(&self, len: usize) {
        self.msgs.inc();
        self.bytes.add(len as u64);
    }

    pub(crate) fn add_to(&self, total: &Traffic) {
        total.msgs.add(self.msgs.get());
        total.bytes.add(self.bytes.get());
    }
}

/// Counters of a KCM socket.
#[derive(Default)]
pub(crate) struct SockStats {
    pub(crate) rx: Traffic,
    pub(crate) tx: Traffic,
}

/// Counters of a psock (and sums of psocks).
#[derive(Default)]
pub(crate) struct PsockStats {
    pub(crate) rx: Traffic,
    pub(crate) tx: Traffic,
    pub(crate) reserved: Counter,
    pub(crate) unreserved: Counter,
    /// Streams broken by a parser error, EMSGSIZE, ETIMEDOUT or a peer close.
    pub(crate) rx_aborts: Counter,
    /// The parser's length ended inside bytes already taken (EPROTO) or was an error.
    pub(crate) rx_bad_len: Counter,
    /// Messages longer than the receive buffer (EMSGSIZE).
    pub(crate) rx_too_big: Counter,
    /// Messages not assembled within SO_RCVTIMEO (ETIMEDOUT).
    pub(crate) rx_timeouts: Counter,
    /// Buffers that could not be allocated.
    pub(crate) rx_mem_fail: Counter,
    /// Sends that failed on the stream.
    pub(crate) tx_aborts: Counter,
}

impl PsockStats {
    pub(crate) fn add_to(&self, total: &PsockStats) {
        self.rx.add_to(&total.rx);
        self.tx.add_to(&total.tx);
        let pairs = [
            (&self.reserved, &total.reserved),
            (&self.unreserved, &total.unreserved),
            (&self.rx_aborts, &total.rx_aborts),
            (&self.rx_bad_len, &total.rx_bad_len),
            (&self.rx_too_big, &total.rx_too_big),
            (&self.rx_timeouts, &total.rx_timeouts),
            (&self.rx_mem_fail, &total.rx_mem_fail),
            (&self.tx_aborts, &total.tx_aborts),
        ];
        for (from, to) in pairs {
            to.add(from.get());
        }
    }
}

/// Counters of a multiplexor (and sums of multiplexors).
#[derive(Default)]
pub(crate) struct MuxStats {
    pub(crate) rx: Traffic,
    pub(crate) tx: Traffic,
    /// Messages sent again after their psock failed.
    pub(crate) tx_retries: Counter,
    pub(crate) psock_attach: Counter,
    pub(crate) psock_unattach: Counter,
    /// Psocks unattached while a sender had them reserved.
    pub(crate) psock_unattach_rsvd: Counter,
    /// Whole messages dropped at unattach (kcm-rs hands them to the members instead).
    pub(crate) rx_ready_drops: Counter,
}

impl MuxStats {
    pub(crate) fn add_to(&self, total: &MuxStats) {
        self.rx.add_to(&total.rx);
        self.tx.add_to(&total.tx);
        let pairs = [
            (&self.tx_retries, &total.tx_retries),
            (&self.psock_attach, &total.psock_attach),
            (&self.psock_unattach, &total.psock_unattach),
            (&self.psock_unattach_rsvd, &total.psock_unattach_rsvd),
            (&self.rx_ready_drops, &total.rx_ready_drops),
        ];
        for (from, to) in pairs {
            to.add(from.get());
        }
    }
}
