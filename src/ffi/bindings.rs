// SPDX-License-Identifier: GPL-2.0

//! Bindings for the kernel interfaces that the `kernel` crate does not bind.
//!
//! `kcm_rs_bindings_generated.rs` is written by bindgen at build time from `kcm_rs.h` with the
//! target kernel's C flags (see `Kbuild`), so every layout matches that kernel's configuration.

#![allow(
    clippy::all,
    clippy::as_underscore,
    clippy::cast_lossless,
    clippy::ptr_as_ptr,
    clippy::ref_as_ptr,
    clippy::undocumented_unsafe_blocks,
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    improper_ctypes,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    dead_code,
    unnecessary_transmutes
)]

use kernel::ffi;
use pin_init::{MaybeZeroable, Zeroable};

// The kernel's bindgen parameters block these types and define them by hand.
type __kernel_size_t = usize;
type __kernel_ssize_t = isize;
type __kernel_ptrdiff_t = isize;

// SAFETY: `__BindgenBitfieldUnit<Storage>` is a newtype around `Storage`.
unsafe impl<Storage> Zeroable for __BindgenBitfieldUnit<Storage> where Storage: Zeroable {}

include!("../kcm_rs_bindings_generated.rs");
