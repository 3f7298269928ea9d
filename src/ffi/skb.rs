// SPDX-License-Identifier: GPL-2.0

//! Socket buffers: [`Skb`], an owned `sk_buff` holding a message (or part of one), and
//! [`SkbChunk`], bytes of a received TCP `sk_buff` lent to a read actor.

use super::bindings as b;
use kernel::prelude::*;

/// Where a receive-path buffer is allocated: in process context (may sleep, charged to the
/// task), or in softirq (must not sleep; a failure is not final, as the read can go on in
/// process context).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllocContext {
    Process,
    Softirq,
}

impl AllocContext {
    fn atomic(self) -> bool {
        self == Self::Softirq
    }
}

/// An owned `sk_buff` holding (part of) one message: a linear buffer kcm-rs assembles the
/// message in, all of whose bytes are the message's; a window of a received buffer
/// ([`SkbChunk::clone_window`]): a clone sharing its data, of which the message is `len()` bytes
/// from `data_start()`; or a chain ([`SkbChunk::start_chain`]): an empty buffer whose
/// `frag_list` holds clones of the received buffers a message spans, of whose concatenated data
/// the message is `len()` bytes from `data_start()`. Only linear ones are appended to or
/// trimmed, only chains extended.
///
/// # Invariants
///
/// `self.0` is a valid `sk_buff` that this value owns one reference of, and that is on no
/// list.
pub(crate) struct Skb(core::ptr::NonNull<b::sk_buff>);

// SAFETY: An `sk_buff` that nothing else references can be used and freed from any thread.
unsafe impl Send for Skb {}
// SAFETY: `&Skb` only reads the buffer.
unsafe impl Sync for Skb {}

impl Skb {
    /// A new empty buffer with room for `capacity` bytes.
    pub(crate) fn alloc(capacity: usize, ctx: AllocContext) -> Result<Self> {
        let capacity = u32::try_from(capacity).map_err(|_| EMSGSIZE)?;
        // SAFETY: FFI call without preconditions; `ctx` says whether it may sleep.
        let skb = unsafe { b::kcmrs_alloc_skb(capacity, ctx.atomic()) };
        // INVARIANT: A new buffer is ours alone.
        core::ptr::NonNull::new(skb).map(Self).ok_or(ENOMEM)
    }

    /// # Safety
    ///
    /// `skb` must be a valid `sk_buff` whose one reference the caller gives up, on no list.
    pub(crate) unsafe fn from_raw(skb: *mut b::sk_buff) -> Self {
        // INVARIANT: Guaranteed by the caller.
        // SAFETY: The caller guarantees `skb` is valid, so not null.
        Self(unsafe { core::ptr::NonNull::new_unchecked(skb) })
    }

    /// Gives up ownership.
    pub(crate) fn into_raw(self) -> *mut b::sk_buff {
        let skb = self.0.as_ptr();
        core::mem::forget(self);
        skb
    }

    pub(crate) fn as_ptr(&self) -> *mut b::sk_buff {
        self.0.as_ptr()
    }

    /// Bytes of the message.
    pub(crate) fn len(&self) -> usize {
        // SAFETY: The control block of a buffer we own is ours to read.
        let window = unsafe { (*b::kcmrs_skb_rx_cb(self.0.as_ptr())).len };
        if window != 0 {
            return window as usize;
        }
        // SAFETY: By the type invariant, the buffer is valid.
        unsafe { b::kcmrs_skb_len(self.0.as_ptr()) as usize }
    }

    /// Where the message's bytes begin in the buffer's data: 0 but for a window.
    pub(crate) fn data_start(&self) -> usize {
        // SAFETY: The control block of a buffer we own is ours to read.
        unsafe { (*b::kcmrs_skb_rx_cb(self.0.as_ptr())).start as usize }
    }

    pub(crate) fn tailroom(&self) -> usize {
        // SAFETY: By the type invariant, the buffer is valid.
        unsafe { b::kcmrs_skb_tailroom(self.0.as_ptr()) as usize }
    }

    /// Appends `len` bytes of `chunk` from `from`; the caller checked `tailroom()`.
    pub(crate) fn append_chunk(&mut self, chunk: &SkbChunk<'_>, from: usize, len: usize) -> Result {
        if len > self.tailroom() || from + len > chunk.len {
            return Err(EINVAL);
        }
        // SAFETY: `skb_put` returns `len` writable bytes, as the tailroom suffices; the chunk's
        // skb is valid for the chunk's lifetime and `offset + from + len` is within it.
        let ret = unsafe {
            let dst = b::kcmrs_skb_put(self.0.as_ptr(), len as u32);
            b::skb_copy_bits(chunk.skb, (chunk.offset + from) as i32, dst, len as i32)
        };
        kernel::error::to_result(ret)
    }

    /// Appends all bytes of `other`; the caller checked `tailroom()`.
    pub(crate) fn append_skb(&mut self, other: &Skb) -> Result {
        let len = other.len();
        if len > self.tailroom() {
            return Err(EINVAL);
        }
        // SAFETY: As in `append_chunk`, with `other` valid by its invariant and holding `len`
        // bytes from `data_start()`.
        let ret = unsafe {
            let dst = b::kcmrs_skb_put(self.0.as_ptr(), len as u32);
            b::skb_copy_bits(other.0.as_ptr(), other.data_start() as i32, dst, len as i32)
        };
        kernel::error::to_result(ret)
    }

    /// Adds the first `len` bytes of `chunk` to a chain ([`SkbChunk::start_chain`]), sharing
    /// them. The chunk must fit the chain ([`SkbChunk::can_extend_chain`]); EINVAL otherwise.
    pub(crate) fn extend_chain(
        &mut self,
        chunk: &SkbChunk<'_>,
        len: usize,
        ctx: AllocContext,
    ) -> Result {
        if !chunk.can_extend_chain(len) {
            return Err(EINVAL);
        }
        // SAFETY: `self` is a buffer we own; the C side extends only a chain that
        // `kcmrs_skb_chain_start` made (its control block says so) and refuses any other
        // (EINVAL). The chunk's buffer is valid for the chunk's lifetime and starts with the
        // `len` bytes; cloning it under the read that lends it is allowed.
        let ret = unsafe {
            b::kcmrs_skb_chain_extend(
                self.0.as_ptr(),
                chunk.skb.cast_mut(),
                len as u32,
                ctx.atomic(),
            )
        };
        kernel::error::to_result(ret)
    }

    /// Drops the bytes past `len`.
    pub(crate) fn trim(&mut self, len: usize) {
        // SAFETY: By the type invariant, the buffer is valid and ours.
        unsafe { b::skb_trim(self.0.as_ptr(), len as u32) };
    }

    /// Bytes of the message already returned by SOCK_SEQPACKET reads.
    pub(crate) fn read_offset(&self) -> usize {
        // SAFETY: The control block of a buffer we own is ours to read.
        unsafe { (*b::kcmrs_skb_rx_cb(self.0.as_ptr())).offset as usize }
    }

    pub(crate) fn set_read_offset(&mut self, offset: usize) {
        // SAFETY: The control block of a buffer we own is ours to write.
        unsafe { (*b::kcmrs_skb_rx_cb(self.0.as_ptr())).offset = offset as u32 };
    }
}

impl Drop for Skb {
    fn drop(&mut self) {
        // SAFETY: By the type invariant, we own one reference.
        unsafe { b::kcmrs_kfree_skb(self.0.as_ptr()) };
    }
}

/// `len` bytes of a received `sk_buff` from `offset`, lent for one read-actor call.
pub(crate) struct SkbChunk<'a> {
    skb: *const b::sk_buff,
    offset: usize,
    len: usize,
    _lent: core::marker::PhantomData<&'a b::sk_buff>,
}

impl SkbChunk<'_> {
    /// # Safety
    ///
    /// `skb` must be valid for `'a`, with `offset + len` bytes of data.
    pub(crate) unsafe fn new(skb: *const b::sk_buff, offset: usize, len: usize) -> Self {
        Self {
            skb,
            offset,
            len,
            _lent: core::marker::PhantomData,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The chunk's bytes run to the end of its buffer's data.
    fn reaches_buffer_end(&self) -> bool {
        // SAFETY: The buffer is valid for the chunk's lifetime (`new`).
        self.offset + self.len == unsafe { b::kcmrs_skb_len(self.skb) } as usize
    }

    /// A message that begins with this chunk and goes on past it can share the chunk's data
    /// ([`SkbChunk::start_chain`]): the chunk runs to its buffer's end, so that the next
    /// buffer's data follows it.
    pub(crate) fn can_start_chain(&self) -> bool {
        self.len > 0 && self.reaches_buffer_end()
    }

    /// The first `len` bytes of the chunk can go on a chain: they are its buffer's first bytes,
    /// and either the message ends in them or the chunk runs to its buffer's end.
    pub(crate) fn can_extend_chain(&self, len: usize) -> bool {
        self.offset == 0
            && len > 0
            && len <= self.len
            && (len < self.len || self.reaches_buffer_end())
    }

    /// A chain holding the chunk's bytes (all of them): the start of a message that goes on in
    /// the next chunks ([`Skb::extend_chain`]). The data is shared, not copied. EINVAL unless
    /// [`SkbChunk::can_start_chain`].
    pub(crate) fn start_chain(&self, ctx: AllocContext) -> Result<Skb> {
        if !self.can_start_chain() {
            return Err(EINVAL);
        }
        let start = u32::try_from(self.offset).map_err(|_| EINVAL)?;
        // SAFETY: The buffer is valid for the chunk's lifetime (`new`) and holds data from
        // `offset`; cloning it under the read that lends it is allowed.
        let skb = unsafe { b::kcmrs_skb_chain_start(self.skb.cast_mut(), start, ctx.atomic()) };
        // INVARIANT: A new chain is ours alone, on no list.
        core::ptr::NonNull::new(skb).map(Skb).ok_or(ENOMEM)
    }

    /// The `len` bytes from `from` as a message of their own that shares the received buffer's
    /// data (a clone), without copying them.
    pub(crate) fn clone_window(&self, from: usize, len: usize, ctx: AllocContext) -> Result<Skb> {
        if len == 0 || from + len > self.len {
            return Err(EINVAL);
        }
        let start = u32::try_from(self.offset + from).map_err(|_| EINVAL)?;
        // SAFETY: The buffer is valid for the chunk's lifetime (`new`) and holds the window;
        // cloning it under the read that lends it is allowed (the clone shares the data and
        // takes its own reference on it).
        let skb = unsafe {
            b::kcmrs_skb_clone_window(self.skb.cast_mut(), start, len as u32, ctx.atomic())
        };
        // INVARIANT: A new clone is ours alone, on no list.
        core::ptr::NonNull::new(skb).map(Skb).ok_or(ENOMEM)
    }
}
