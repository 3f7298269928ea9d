// SPDX-License-Identifier: GPL-2.0

//! [`SpinLockBh`]: a spinlock taken with bottom halves disabled (`spin_lock_bh`), for state that
//! the receive path uses in softirq (a psock's `sk_data_ready`) and process context alike. The
//! kernel crate's `SpinLock` leaves bottom halves on, so a softirq on the same CPU could spin on
//! a lock its interrupted task holds.

use super::bindings as b;
use kernel::sync::lock::{Backend, Guard, Lock};

/// A spinlock whose holders run with bottom halves disabled.
pub(crate) type SpinLockBh<T> = Lock<T, SpinLockBhBackend>;

/// A guard of a [`SpinLockBh`].
pub(crate) type SpinLockBhGuard<'a, T> = Guard<'a, T, SpinLockBhBackend>;

/// The `spin_lock_bh` backend of [`SpinLockBh`].
pub(crate) struct SpinLockBhBackend;

/// Creates a [`SpinLockBh`] initialiser with a name and a new lock class.
macro_rules! new_spinlock_bh {
    ($inner:expr, $name:literal $(,)?) => {
        $crate::ffi::lock::SpinLockBh::new(
            $inner,
            kernel::optional_name!($name),
            kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_spinlock_bh;

// SAFETY: `spinlock_t` gives mutual exclusion between `lock` and `unlock`; `relock` is the
// default, which calls `lock` again (the same method).
unsafe impl Backend for SpinLockBhBackend {
    type State = kernel::bindings::spinlock_t;
    type GuardState = ();

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut kernel::bindings::lock_class_key,
    ) {
        // SAFETY: The caller gives a `ptr` valid for writes, and a `name` and `key` that live
        // for ever.
        unsafe { kernel::bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: The caller gives an initialised lock; our bindings name the same C type.
        unsafe { b::kcmrs_spin_lock_bh(ptr.cast()) }
    }

    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        // SAFETY: As in `lock`.
        (unsafe { b::kcmrs_spin_trylock_bh(ptr.cast()) }).then_some(())
    }

    unsafe fn unlock(ptr: *mut Self::State, _guard_state: &Self::GuardState) {
        // SAFETY: The caller holds the lock, taken by `lock` or `try_lock`.
        unsafe { b::kcmrs_spin_unlock_bh(ptr.cast()) }
    }

    unsafe fn assert_is_held(ptr: *mut Self::State) {
        // SAFETY: The caller gives an initialised lock.
        unsafe { kernel::bindings::spin_assert_is_held(ptr) }
    }
}
