// SPDX-License-Identifier: GPL-2.0

//! Per-network-namespace state: one [`NetState`] for every `struct net`.
//!
//! The `net_generic` slot of a namespace holds one reference of an `Arc<NetState>` from the
//! namespace's init callback to its exit callback. Multiplexors hold their own references, so a
//! namespace's state outlives the namespace while a socket of it still exists.

use super::bindings as b;
use super::StaticCObject;
use crate::net_state::NetState;
use kernel::prelude::*;
use kernel::sync::Arc;

/// The id `register_pernet_device` assigns to our `net_generic` slot.
static NET_ID: StaticCObject<u32> = StaticCObject::new(0);

static PERNET_OPS: StaticCObject<b::pernet_operations> = StaticCObject::new(b::pernet_operations {
    init: Some(net_init),
    exit: Some(net_exit),
    id: NET_ID.get(),
    size: core::mem::size_of::<*const NetState>(),
    // SAFETY: All-zero is a valid `pernet_operations` (null pointers, no callbacks).
    ..unsafe { core::mem::zeroed() }
});

/// A `struct net` of a live socket.
///
/// # Invariants
///
/// `self.0` points to a live `struct net` whose pernet init callback has run and whose exit
/// callback has not.
#[derive(Clone, Copy)]
pub(crate) struct Net(*mut b::net);

impl Net {
    /// # Safety
    ///
    /// `net` must be the namespace of a socket the caller holds, so that it stays live (with
    /// our slot filled) while the value is used.
    pub(crate) unsafe fn from_raw(net: *mut b::net) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self(net)
    }

    pub(crate) fn as_ptr(self) -> *mut b::net {
        self.0
    }

    fn slot(self) -> *mut *const NetState {
        // SAFETY: By the type invariant the net is live and registered, so `net_generic` returns
        // its slot of `size_of::<*const NetState>()` bytes. `NET_ID` is written before any init.
        unsafe { b::kcmrs_net_generic(self.0, *NET_ID.get()).cast() }
    }

    /// The kcm-rs state of this namespace.
    pub(crate) fn state(self) -> Arc<NetState> {
        // SAFETY: By the type invariant, init has stored an `Arc::into_raw` in the slot and exit
        // has not taken it back, so the pointer is a live `Arc<NetState>`.
        let borrowed = unsafe { kernel::sync::ArcBorrow::from_raw(*self.slot()) };
        borrowed.into()
    }
}

/// `pernet_operations::init`.
///
/// # Safety
///
/// Called by the namespace core only, for a namespace being set up.
unsafe extern "C" fn net_init(net: *mut b::net) -> i32 {
    // SAFETY: The core calls init with a namespace being set up, whose slot exists.
    let net = unsafe { Net::from_raw(net) };
    kernel::error::from_result(|| {
        let state = NetState::new()?;
        // SAFETY: The slot is ours and valid for writes; it is empty until init.
        unsafe { *net.slot() = Arc::into_raw(state) };
        super::procfs::create(net).inspect_err(|_| {
            // SAFETY: Stored just above; exit will not run for a failed init.
            drop(unsafe { Arc::from_raw(core::ptr::replace(net.slot(), core::ptr::null())) });
        })?;
        Ok(0)
    })
}

/// `pernet_operations::exit`.
///
/// # Safety
///
/// Called by the namespace core only, once, for a namespace that `net_init` succeeded on.
unsafe extern "C" fn net_exit(net: *mut b::net) {
    // SAFETY: The core calls exit once, for a namespace that init succeeded on.
    let net = unsafe { Net::from_raw(net) };
    // The entries go first: removal waits for readers, which use the state.
    super::procfs::remove(net);
    let slot = net.slot();
    // SAFETY: init stored an `Arc::into_raw` in the slot; we take that reference back once.
    let state = unsafe { Arc::from_raw(core::ptr::replace(slot, core::ptr::null())) };
    state.namespace_exit();
}

/// Registration of the pernet operations; unregisters on drop.
pub(crate) struct PernetRegistration(());

impl PernetRegistration {
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: `PERNET_OPS` is a static that stays registered until `drop` unregisters it.
        kernel::error::to_result(unsafe { b::register_pernet_device(PERNET_OPS.get()) })?;
        Ok(Self(()))
    }
}

impl Drop for PernetRegistration {
    fn drop(&mut self) {
        // SAFETY: `register` succeeded for this static.
        unsafe { b::unregister_pernet_device(PERNET_OPS.get()) };
    }
}
