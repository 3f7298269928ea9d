// SPDX-License-Identifier: GPL-2.0

//! kcm-rs: the Kernel Connection Multiplexor (AF_KCM) in Rust.
//!
//! A KCM socket belongs to a multiplexor ([`mux::Mux`]); `socket(AF_KCM, ...)` makes a new
//! multiplexor and SIOCKCMCLONE adds sockets to it. See `Documentation/kcm-rs/design.rst`.
//!
//! # Lock order
//!
//! Outer to inner. A lock is only taken while holding locks listed above it.
//!
//! 1. `NetState::muxes` (mutex): the multiplexors of a namespace.
//! 2. `Mux::members` (mutex): the KCM sockets of a multiplexor and their receive flags.
//!
//! `Mux::leave` drops `Mux::members` before it takes `NetState::muxes`.

use kernel::prelude::*;

mod ffi;
mod framer;
mod kcm_sock;
mod mux;
mod net_state;
mod psock;

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
