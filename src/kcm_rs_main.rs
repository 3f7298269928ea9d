// SPDX-License-Identifier: GPL-2.0

//! kcm-rs: the Kernel Connection Multiplexor (AF_KCM) in Rust.
//!
//! A KCM socket belongs to a multiplexor ([`mux::Mux`]); `socket(AF_KCM, ...)` makes a new
//! multiplexor and SIOCKCMCLONE adds sockets to it. See `Documentation/kcm-rs/design.rst`.
//!
//! # Lock order
//!
//! Outer to inner. A lock is only taken while holding locks listed above it; the same list is
//! in `Documentation/kcm-rs/design.rst`.
//!
//! 1. `lock_sock` of a KCM socket (`KcmSk::lock`): one reader, or a KCM_RECV_DISABLE change.
//! 2. The lock of an attached socket: `lock_sock` (`AttachedStream::lock`), or in its
//!    `sk_data_ready` the spinlock TCP holds while no task owns it (`SoftirqLocked`). It
//!    protects the psock's receive state (`PsockRx`).
//! 3. `KcmSock::tx` (mutex): the message a socket is building. Not held while it is sent: the
//!    `sending` flag gives the sender the turn, and other senders wait for it on
//!    `KcmSock::tx_turn` (interruptibly, within SO_SNDTIMEO).
//! 4. `NetState::muxes` (mutex): the multiplexors of a namespace; never held with a lock below.
//! 5. `Mux::state` (`SpinLockBh`, taken in softirq too): members, psocks, held messages.
//!    Nothing under it sleeps; its vectors grow with it released (`Mux::lock_with_room`).
//! 6. `Psock::tx` (`SpinLockBh`): the psock's reservation, writing and broken flags (unattach
//!    waits on `Psock::tx_idle` with it released until a message being written is finished).
//!
//! `sk_callback_lock` of an attached socket is taken under `Mux::state` (attach); the
//! callbacks release it before they parse. No kcm-rs lock is held while calling into TCP to
//! send or while waiting for a message.

use kernel::prelude::*;

mod ffi;
mod framer;
mod kcm_sock;
mod mux;
mod net_state;
mod proc;
mod psock;
mod stats;
mod timeo;

module! {
    type: KcmRsModule,
    name: "kcm_rs",
    authors: ["kcm-rs developers"],
    description: "Kernel Connection Multiplexor (AF_KCM) in Rust",
    license: "GPL",
    alias: ["net-pf-41"],
}

struct KcmRsModule {
    // Dropped in this order: no socket exists at exit, then queued work drains.
    _family: ffi::family::FamilyRegistration,
    _queue: ffi::workqueue::OwnedQueue,
}

impl kernel::Module for KcmRsModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let queue = ffi::workqueue::OwnedQueue::create()?;
        let family = ffi::family::FamilyRegistration::register()?;
        pr_info!("AF_KCM registered\n");
        Ok(Self {
            _family: family,
            _queue: queue,
        })
    }
}
