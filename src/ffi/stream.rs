// SPDX-License-Identifier: GPL-2.0

//! [`StreamSocket`]: a socket attached to a multiplexor (a psock's TCP, MPTCP or kernel TLS
//! socket), and the callbacks kcm-rs installs on it.

use super::bindings as b;
use super::skb::{AllocContext, SkbChunk};
use crate::psock::Psock;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::types::Opaque;

/// What carries the byte stream of an attachable socket.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Transport {
    /// TCP over IPv4 or IPv6, with no upper-layer protocol.
    Tcp,
    /// Multipath TCP (IPPROTO_MPTCP): `read_sock` and `sendmsg` of the MPTCP socket see the
    /// one reassembled stream of all its subflows.
    Mptcp,
    /// TCP with kernel TLS in software for both directions: `read_sock` hands out decrypted
    /// records, `sendmsg` encrypts.
    Tls,
}

/// A socket from `sockfd_lookup`, kept with its file reference.
///
/// # Invariants
///
/// `sock` is a live `struct socket` with a non-null `sk`, and we hold one reference on its
/// file, so both stay live until drop. `saved` is written only by `take_callbacks`.
/// `transport` is what [`StreamSocket::claim`] found; it cannot change while the socket is
/// attached (the ULP slot of a TCP socket is ours, TLS cannot be removed from a socket, and
/// the protocol is fixed).
pub(crate) struct StreamSocket {
    sock: core::ptr::NonNull<b::socket>,
    saved: Opaque<b::kcmrs_saved_callbacks>,
    transport: Transport,
}

// SAFETY: The socket is reference counted through its file and used under its own locks.
unsafe impl Send for StreamSocket {}
// SAFETY: As above; `saved` is written once before it is published to the callbacks.
unsafe impl Sync for StreamSocket {}

/// The socket lock (`lock_sock`) of a [`StreamSocket`], released on drop.
pub(crate) struct StreamGuard<'a>(&'a StreamSocket);

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: We took the lock in `StreamSocket::lock`.
        unsafe { b::release_sock(self.0.sk()) };
    }
}

/// Why a socket cannot be attached.
pub(crate) enum Unattachable {
    /// The descriptor is not a socket.
    NotASocket,
    /// The socket has no sock.
    NoSock,
}

impl StreamSocket {
    /// The socket of `fd`.
    pub(crate) fn lookup(fd: i32) -> core::result::Result<Self, Unattachable> {
        let mut err = 0;
        // SAFETY: FFI call; the kernel checks `fd`.
        let sock = unsafe { b::kcmrs_sockfd_lookup(fd, &mut err) };
        let sock = core::ptr::NonNull::new(sock).ok_or(Unattachable::NotASocket)?;
        // SAFETY: `sockfd_lookup` returned a live socket with a file reference.
        if unsafe { (*sock.as_ptr()).sk }.is_null() {
            // SAFETY: Give back the file reference we were given.
            unsafe { b::fput((*sock.as_ptr()).file) };
            return Err(Unattachable::NoSock);
        }
        // INVARIANT: Live socket with a sock, and its file reference is ours.
        Ok(Self {
            sock,
            saved: Opaque::uninit(),
            transport: Transport::Tcp,
        })
    }

    fn sk(&self) -> *mut b::sock {
        // SAFETY: By the type invariant the socket is live and has a sock.
        unsafe { (*self.sock.as_ptr()).sk }
    }

    /// The same underlying socket as `other`.
    pub(crate) fn same_socket(&self, other: &StreamSocket) -> bool {
        self.sk() == other.sk()
    }

    /// What carries the stream, as found by [`Self::claim`].
    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    /// The psock hears of whole kernel TLS records (TLS's record callback) instead of bytes
    /// (`sk_data_ready`, which TLS keeps for its record parser).
    fn tls_records(&self) -> bool {
        self.transport == Transport::Tls
    }

    /// Checks that the socket can be attached and claims it.
    ///
    /// TCP, MPTCP, or TCP with kernel TLS set up for receive and transmit (in software), of
    /// IPv4 or IPv6; anything else is EOPNOTSUPP. A plain TCP socket is marked attached in its
    /// upper-layer-protocol slot, so that no ULP (kernel TLS) can take over the stream while a
    /// psock reads it: TCP_ULP then gets EEXIST. EALREADY when kcm-rs has that socket already,
    /// EOPNOTSUPP when another ULP owns the stream (its bytes are not the application's
    /// messages). A second attach of an MPTCP or TLS socket gets EALREADY later, from
    /// [`Self::take_callbacks`].
    pub(crate) fn claim(&mut self) -> Result {
        let guard = self.lock();
        // SAFETY: The sock is live, and its lock is held (`guard`).
        let found = unsafe { b::kcmrs_sk_transport(self.sk()) };
        let transport = match found {
            b::kcmrs_transport_KCMRS_TRANSPORT_TCP => Transport::Tcp,
            b::kcmrs_transport_KCMRS_TRANSPORT_MPTCP => Transport::Mptcp,
            b::kcmrs_transport_KCMRS_TRANSPORT_TLS => Transport::Tls,
            _ => return Err(super::errno::eopnotsupp()),
        };
        // Not listening, not closed: connected or connecting (net/kcm's rule).
        if self.is_listening_or_closed() {
            return Err(super::errno::eopnotsupp());
        }
        if transport == Transport::Tcp {
            // SAFETY: The sock is a live TCP sock, and its lock is held (`guard`).
            kernel::error::to_result(unsafe { b::kcmrs_sk_claim_ulp_slot(self.sk()) })?;
        }
        drop(guard);
        self.transport = transport;
        Ok(())
    }

    /// Gives back the slot [`Self::claim`] took (nothing if it is not ours).
    pub(crate) fn release_ulp_slot(&self, _guard: &StreamGuard<'_>) {
        // SAFETY: The sock is live, and its lock is held (`_guard`); the helper only touches a
        // plain TCP socket's slot that holds our marker.
        unsafe { b::kcmrs_sk_release_ulp_slot(self.sk()) };
    }

    fn state(&self) -> u32 {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sk_state(self.sk()) as u32 }
    }

    /// Listening or closed (never connected, or done).
    fn is_listening_or_closed(&self) -> bool {
        matches!(self.state(), b::TCP_LISTEN | b::TCP_CLOSE)
    }

    /// The peer closed or reset the connection, or the socket has an error.
    fn peer_done(&self) -> bool {
        // SAFETY: The sock is live by the type invariant.
        let err = unsafe { b::kcmrs_sk_err(self.sk()) };
        err != 0
            || matches!(
                self.state(),
                b::TCP_CLOSE_WAIT
                    | b::TCP_LAST_ACK
                    | b::TCP_CLOSING
                    | b::TCP_TIME_WAIT
                    | b::TCP_CLOSE
            )
    }

    /// TCP_CORK on (hold partial segments) or off (push them); for MPTCP, on every subflow.
    pub(crate) fn set_cork(&self, on: bool) {
        // SAFETY: The sock is live and a TCP or MPTCP sock ([`Self::claim`]); no lock held.
        unsafe { b::kcmrs_sk_set_cork(self.sk(), on) };
    }

    /// Receive queue length, receive memory, write queue length, write memory (for /proc).
    pub(crate) fn queue_state(&self) -> [i32; 4] {
        // SAFETY: The sock is live by the type invariant; racy reads are fine for /proc.
        unsafe {
            [
                b::kcmrs_sk_receive_qlen(self.sk()),
                b::kcmrs_sk_rmem_alloc(self.sk()),
                b::kcmrs_sk_write_qlen(self.sk()),
                b::kcmrs_sk_wmem_alloc(self.sk()),
            ]
        }
    }

    /// SO_RCVTIMEO in jiffies (`MAX_SCHEDULE_TIMEOUT` when unset).
    pub(crate) fn rcvtimeo(&self) -> isize {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sk_rcvtimeo(self.sk()) }
    }

    /// The receive buffer size: the largest message accepted (as net/kcm).
    pub(crate) fn rcvbuf(&self) -> usize {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sk_rcvbuf(self.sk()) }.max(0) as usize
    }

    /// Bytes queued for sending and not yet acknowledged.
    pub(crate) fn send_queued(&self) -> usize {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sk_wmem_queued(self.sk()) }.max(0) as usize
    }

    /// Free send space, and the send buffer size.
    pub(crate) fn send_space(&self) -> (usize, usize) {
        // SAFETY: The sock is live by the type invariant.
        unsafe {
            (
                b::kcmrs_sk_stream_wspace(self.sk()).max(0) as usize,
                b::kcmrs_sk_sndbuf(self.sk()).max(0) as usize,
            )
        }
    }

    /// Posts `err` on the socket (SO_ERROR, POLLERR) and wakes its users.
    pub(crate) fn report_error(&self, err: Error) {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sk_report_error(self.sk(), -err.to_errno()) };
    }

    /// Takes the socket lock.
    pub(crate) fn lock(&self) -> StreamGuard<'_> {
        // SAFETY: The sock is live by the type invariant; process context.
        unsafe { b::kcmrs_lock_sock(self.sk()) };
        StreamGuard(self)
    }

    /// Installs the psock callbacks; the socket keeps `psock` (as `sk_user_data`) until
    /// [`StreamSocket::restore_callbacks`]. EALREADY when another user (KCM, sockmap, a ULP)
    /// owns `sk_user_data`.
    ///
    /// With kernel TLS the psock hears of whole records ([`Self::tls_records`]).
    pub(crate) fn take_callbacks(&self, psock: Arc<Psock>) -> Result {
        let data_ready = if self.tls_records() {
            psock_data_ready::<true> as unsafe extern "C" fn(*mut b::sock)
        } else {
            psock_data_ready::<false>
        };
        let raw = Arc::into_raw(psock);
        // SAFETY: The sock is live (and has a TLS receive context when `tls_records()`, as
        // `claim` found); `saved` is ours to write, and is written before the callbacks can
        // run, under `sk_callback_lock`.
        let ret = unsafe {
            b::kcmrs_sk_take_callbacks(
                self.sk(),
                self.tls_records(),
                raw.cast_mut().cast(),
                Some(data_ready),
                Some(psock_state_change),
                self.saved.get(),
            )
        };
        if ret != 0 {
            // SAFETY: The socket did not take the reference `into_raw` made: take it back.
            drop(unsafe { Arc::from_raw(raw) });
        }
        kernel::error::to_result(ret)
    }

    /// Restores the callbacks saved by `take_callbacks`, clears `sk_user_data` and returns the
    /// psock the socket held. After it returns no psock callback starts on the socket; one that
    /// started before goes on with a reference of its own (see `with_psock`). Called under
    /// `lock_sock`, which waits for a softirq reading a TCP socket to end.
    pub(crate) fn restore_callbacks(&self) -> Option<Arc<Psock>> {
        // SAFETY: `take_callbacks` succeeded, so `saved` holds the original callbacks.
        let user_data = unsafe {
            b::kcmrs_sk_restore_callbacks(self.sk(), self.tls_records(), self.saved.get())
        };
        // SAFETY: `sk_user_data` held the reference `take_callbacks` gave it; callbacks only
        // clone it under `sk_callback_lock`, which the restore took, so it is ours now.
        (!user_data.is_null()).then(|| unsafe { Arc::from_raw(user_data.cast::<Psock>()) })
    }

    fn call_saved_state_change(&self) {
        // SAFETY: Only called from our state_change callback, so `take_callbacks` wrote `saved`.
        unsafe {
            if let Some(state_change) = (*self.saved.get()).state_change {
                b::kcmrs_sk_call_saved(Some(state_change), self.sk());
            }
        }
    }

    /// Waits until the socket has send space, up to `*timeo` jiffies (updated). EAGAIN when the
    /// time passes, a signal's error, or EPIPE when the socket failed.
    pub(crate) fn wait_for_space(&self, timeo: &mut isize) -> Result {
        // SAFETY: The sock is live by the type invariant; process context, no lock held.
        kernel::error::to_result(unsafe { b::kcmrs_sk_stream_wait_space(self.sk(), timeo) })
    }

    /// Sends `data`; returns the bytes sent. `more` asks TCP to wait for more (MSG_MORE).
    pub(crate) fn send(&self, data: &[u8], nonblock: bool, more: bool) -> Result<usize> {
        let mut flags = b::MSG_NOSIGNAL;
        if nonblock {
            flags |= b::MSG_DONTWAIT;
        }
        if more {
            flags |= b::MSG_MORE;
        }
        let mut msg = b::msghdr {
            msg_flags: flags,
            ..Default::default()
        };
        let mut vec = b::kvec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        // SAFETY: The socket is live; `vec` describes `data`, which outlives the call and is
        // only read.
        let ret =
            unsafe { b::kernel_sendmsg(self.sock.as_ptr(), &mut msg, &mut vec, 1, data.len()) };
        kernel::error::to_result(ret)?;
        Ok(ret as usize)
    }
}

/// Proof that the running `sk_data_ready` of a plain TCP socket holds the socket's spinlock while
/// no task owns the socket: the callback excludes every `lock_sock` holder, as one would.
///
/// # Invariants
///
/// `sk` is a TCP socket whose spinlock the current context holds, with no owner, for as long as
/// the value lives (it lives on the callback's stack only).
pub(crate) struct SoftirqLocked {
    sk: *mut b::sock,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl SoftirqLocked {
    /// The proof for `sk`, if the socket is plain TCP and no task owns it.
    ///
    /// # Safety
    ///
    /// Must be called from `sk_data_ready` of `sk`, a live socket carried by `transport`.
    unsafe fn in_data_ready(sk: *mut b::sock, transport: Transport) -> Option<Self> {
        // TCP calls `sk_data_ready` with the socket's spinlock held (`tcp_v4_rcv`,
        // `tcp_v6_rcv`), unless from the backlog of the task that owns the socket, which the
        // owner flag tells (stable in both cases). MPTCP and TLS have other rules.
        // SAFETY: `sk` is live.
        if transport != Transport::Tcp || unsafe { b::kcmrs_sk_owned_by_user(sk) } {
            return None;
        }
        // INVARIANT: Checked just above.
        Some(Self {
            sk,
            _not_send: core::marker::PhantomData,
        })
    }
}

/// An attached socket and the state `T` that the socket's lock protects (the psock's receive
/// state), as the stream parser of net/core protects its own.
///
/// # Invariants
///
/// `state` is only reached through an [`AttachedGuard`], which holds the socket's lock in one of
/// its two forms: `lock_sock` (process context), or [`SoftirqLocked`]. The two exclude each
/// other: an owner is set under the spinlock, and the softirq form needs no owner.
pub(crate) struct AttachedStream<T> {
    socket: StreamSocket,
    state: core::cell::UnsafeCell<T>,
}

// SAFETY: `state` is only used under the socket's lock (type invariant), so `T: Send` suffices;
// `StreamSocket` is `Send` and `Sync`.
unsafe impl<T: Send> Send for AttachedStream<T> {}
// SAFETY: As above.
unsafe impl<T: Send> Sync for AttachedStream<T> {}

/// The lock of an [`AttachedStream`], with access to its state.
pub(crate) struct AttachedGuard<'a, T> {
    stream: &'a AttachedStream<T>,
    /// `lock_sock`, released on drop; `None` in softirq ([`SoftirqLocked`]).
    task_lock: Option<StreamGuard<'a>>,
}

impl<T> AttachedStream<T> {
    pub(crate) fn new(socket: StreamSocket, state: T) -> Self {
        Self {
            socket,
            state: core::cell::UnsafeCell::new(state),
        }
    }

    pub(crate) fn socket(&self) -> &StreamSocket {
        &self.socket
    }

    /// Takes the socket lock (process context).
    pub(crate) fn lock(&self) -> AttachedGuard<'_, T> {
        AttachedGuard {
            stream: self,
            task_lock: Some(self.socket.lock()),
        }
    }

    /// The lock the running `sk_data_ready` holds, if `lock` is for this socket.
    pub(crate) fn lock_in_softirq<'a>(
        &'a self,
        lock: &'a SoftirqLocked,
    ) -> Option<AttachedGuard<'a, T>> {
        (lock.sk == self.socket.sk()).then_some(AttachedGuard {
            stream: self,
            task_lock: None,
        })
    }
}

impl<T> core::ops::Deref for AttachedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: The guard holds the socket's lock (type invariant of `AttachedStream`).
        unsafe { &*self.stream.state.get() }
    }
}

impl<T> core::ops::DerefMut for AttachedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: As in `deref`; `&mut self` makes the access unique.
        unsafe { &mut *self.stream.state.get() }
    }
}

impl<T> AttachedGuard<'_, T> {
    /// How buffers may be allocated under this form of the lock.
    pub(crate) fn alloc_context(&self) -> AllocContext {
        match self.task_lock {
            Some(_) => AllocContext::Process,
            None => AllocContext::Softirq,
        }
    }

    /// Gives back the upper-layer-protocol slot [`StreamSocket::claim`] took.
    pub(crate) fn release_ulp_slot(&self) {
        // SAFETY: The sock is live, and its lock is held in one of its forms, which both exclude
        // `setsockopt(TCP_ULP)`; the helper only touches a plain TCP socket's slot that holds
        // our marker.
        unsafe { b::kcmrs_sk_release_ulp_slot(self.stream.socket.sk()) };
    }

    /// Reads the received bytes (with TLS: the decrypted bytes of whole records) through
    /// `actor`, which gets the state and returns how many bytes of each chunk it used (0 stops
    /// the read).
    ///
    /// Returns whether the stream is over: nothing was left to read, and the peer has closed or
    /// reset the connection (or the socket has an error), so every byte that arrived before the
    /// end has gone to `actor`. Or the transport's error (with TLS: EBADMSG for a record that
    /// does not decrypt, EINVAL for a record that is not data), which comes after the bytes
    /// before it went to `actor`.
    pub(crate) fn read(
        &mut self,
        actor: &mut dyn FnMut(&mut T, &SkbChunk<'_>) -> usize,
    ) -> Result<bool> {
        let socket = &self.stream.socket;
        let state: &mut T = self;
        let mut on_chunk = |chunk: &SkbChunk<'_>| actor(state, chunk);
        let mut on_chunk: &mut dyn FnMut(&SkbChunk<'_>) -> usize = &mut on_chunk;
        // `read_sock` of kernel TLS returns what it read and keeps a failure for the next
        // call: read again until nothing comes, the actor stops, or the read fails.
        loop {
            let mut desc = b::read_descriptor_t {
                count: 1,
                ..Default::default()
            };
            desc.arg.data = (&raw mut on_chunk).cast();
            // SAFETY: The socket lock is held (by the guard, in either form), as every
            // transport's `read_sock` needs; `desc.arg.data` points to `on_chunk`, which
            // outlives the call, and `read_actor` is the only user of it.
            let ret =
                unsafe { b::kcmrs_read_sock(socket.sock.as_ptr(), &mut desc, Some(read_actor)) };
            match kernel::error::to_result(ret) {
                // The actor stopped.
                Ok(()) if desc.count == 0 => return Ok(false),
                // Read something, and the actor wants more.
                Ok(()) if ret > 0 => {}
                // Nothing left. Under the socket lock arriving segments wait (in the backlog, or
                // behind the spinlock), so no byte can come between the empty read and this
                // check.
                Ok(()) => return Ok(socket.peer_done()),
                // Nothing to read now (TLS: no whole record yet, or a user's read is under way).
                Err(e) if e == EAGAIN => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for StreamSocket {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we hold one file reference.
        unsafe { b::fput((*self.sock.as_ptr()).file) };
    }
}

/// `sk_read_actor_t` for [`StreamSocket::read`].
///
/// # Safety
///
/// Called by `read_sock` only, with the descriptor `read` set up.
unsafe extern "C" fn read_actor(
    desc: *mut b::read_descriptor_t,
    skb: *mut b::sk_buff,
    offset: c_uint,
    len: usize,
) -> c_int {
    // SAFETY: `read` stored a pointer to its `&mut dyn FnMut` in `arg.data`.
    let actor = unsafe {
        &mut *(*desc)
            .arg
            .data
            .cast::<&mut dyn FnMut(&SkbChunk<'_>) -> usize>()
    };
    // The actor takes at most one message a call: it is called again on the rest of the
    // buffer here, rather than by `read_sock`, which would look the buffer up in the receive
    // queue again for each message.
    let mut total = 0;
    while total < len {
        // SAFETY: `read_sock` lends `skb` with `len` bytes from `offset` for this call.
        let chunk = unsafe { SkbChunk::new(skb, offset as usize + total, len - total) };
        let used = actor(&chunk).min(len - total);
        if used == 0 {
            // SAFETY: `desc` is valid for the call.
            unsafe { (*desc).count = 0 };
            break;
        }
        total += used;
    }
    total as c_int
}

/// Runs `f` with the psock of `sk`, if the socket still has one. `f` runs after the callback
/// lock is released, with its own reference on the psock: the multiplexor's lock, which the
/// receive path takes, is held around `take_callbacks` (which takes the callback lock).
///
/// # Safety
///
/// `sk` must be a live sock.
unsafe fn with_psock(sk: *mut b::sock, f: impl FnOnce(Arc<Psock>)) -> bool {
    // SAFETY: `sk` is live; the read lock keeps `sk_user_data` and its reference in place.
    let user_data = unsafe { b::kcmrs_sk_user_data_lock(sk) };
    let psock: Option<Arc<Psock>> = (!user_data.is_null()).then(|| {
        // SAFETY: `sk_user_data` holds a reference of an `Arc<Psock>` (`take_callbacks`), which
        // unattach only gives up after `restore_callbacks`, under the write lock.
        unsafe { kernel::sync::ArcBorrow::from_raw(user_data.cast::<Psock>()) }.into()
    });
    // SAFETY: Taken above.
    unsafe { b::kcmrs_sk_user_data_unlock(sk) };
    let found = psock.is_some();
    if let Some(psock) = psock {
        f(psock);
    }
    found
}

/// `sk_data_ready` of an attached TCP or MPTCP socket, or with `TLS_RECORDS` the record
/// callback of kernel TLS on an attached TLS socket (a whole record arrived).
///
/// # Safety
///
/// Called by the network stack (or kernel TLS) only, on a live sock, which has a TLS receive
/// context when `TLS_RECORDS`.
unsafe extern "C" fn psock_data_ready<const TLS_RECORDS: bool>(sk: *mut b::sock) {
    let on_psock = |psock: Arc<Psock>| {
        let lock = if TLS_RECORDS {
            None
        } else {
            // SAFETY: This is `sk_data_ready` of `sk`, the psock's socket.
            unsafe { SoftirqLocked::in_data_ready(sk, psock.stream().transport()) }
        };
        Psock::data_ready(psock, lock.as_ref());
    };
    // SAFETY: `sk` is live.
    let found = unsafe { with_psock(sk, on_psock) };
    if !found {
        // Unattached meanwhile: the socket's (or TLS's) own callback is back in place.
        // SAFETY: `sk` is live, with a TLS receive context (as long as the sock lives) when
        // `TLS_RECORDS`.
        unsafe { b::kcmrs_sk_own_data_ready(sk, TLS_RECORDS) };
    }
}

/// `sk_state_change` of an attached socket.
///
/// # Safety
///
/// Called by the network stack only, on a live sock.
unsafe extern "C" fn psock_state_change(sk: *mut b::sock) {
    // SAFETY: `sk` is live.
    unsafe {
        with_psock(sk, |psock| {
            psock.stream().call_saved_state_change();
            Psock::state_changed(psock);
        })
    };
}
