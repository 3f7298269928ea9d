// SPDX-License-Identifier: GPL-2.0

//! The thin FFI layer: every `unsafe` block of kcm-rs lives below this module.
//!
//! The layer turns the C socket interfaces (`struct proto_ops`, `struct net_proto_family`,
//! `struct pernet_operations`, user memory) into calls on the safe types of the multiplexor
//! logic ([`crate::kcm_sock`], [`crate::mux`], [`crate::net_state`]).

pub(crate) mod bindings;
pub(crate) mod bpf;
pub(crate) mod errno;
pub(crate) mod family;
pub(crate) mod kcm_sk;
pub(crate) mod lock;
pub(crate) mod msg;
pub(crate) mod pernet;
pub(crate) mod procfs;
pub(crate) mod skb;
pub(crate) mod stream;
pub(crate) mod task;
pub(crate) mod user;
pub(crate) mod workqueue;

use core::cell::UnsafeCell;

/// A `static` C object that the kernel writes to (list linkage, ids) after registration.
///
/// # Invariants
///
/// The contents are only written by C code that owns the object while it is registered, or by
/// module init and exit, which the kernel serialises with every other use.
#[repr(transparent)]
pub(crate) struct StaticCObject<T>(UnsafeCell<T>);

// SAFETY: By the type invariant, writes happen only where the kernel serialises them.
unsafe impl<T> Sync for StaticCObject<T> {}

impl<T> StaticCObject<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    pub(crate) const fn get(&self) -> *mut T {
        self.0.get()
    }
}
