// SPDX-License-Identifier: GPL-2.0

//! [`StreamSocket`]: a socket attached to a multiplexor (a psock's TCP, MPTCP or kernel TLS
//! socket), and the callbacks kcm-rs installs on it.

use super::bindings as b;
use super::skb::SkbChunk;
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
    /// psock the socket held. After it returns no psock callback runs or starts on the socket.
    pub(crate) fn restore_callbacks(&self) -> Option<Arc<Psock>> {
        // SAFETY: `take_callbacks` succeeded, so `saved` holds the original callbacks.
        let user_data = unsafe {
            b::kcmrs_sk_restore_callbacks(self.sk(), self.tls_records(), self.saved.get())
        };
        // SAFETY: `sk_user_data` held the reference `take_callbacks` gave it; no callback can
        // use it any more (they run under `sk_callback_lock`, which the restore took).
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

    /// Reads the received bytes (with TLS: the decrypted bytes of whole records) through
    /// `actor`, which returns how many of each chunk it used (0 stops the read). Takes the
    /// socket lock for the read.
    ///
    /// Returns whether the stream is over: nothing was left to read, and the peer has closed or
    /// reset the connection (or the socket has an error), so every byte that arrived before the
    /// end has gone to `actor`. Or the transport's error (with TLS: EBADMSG for a record that
    /// does not decrypt, EINVAL for a record that is not data), which comes after the bytes
    /// before it went to `actor`.
    pub(crate) fn read(&self, actor: &mut dyn FnMut(&SkbChunk<'_>) -> usize) -> Result<bool> {
        let _guard = self.lock();
        let mut actor = actor;
        // `read_sock` of kernel TLS returns what it read and keeps a failure for the next
        // call: read again until nothing comes, the actor stops, or the read fails.
        loop {
            let mut desc = b::read_descriptor_t {
                count: 1,
                ..Default::default()
            };
            desc.arg.data = (&raw mut actor).cast();
            // SAFETY: The socket lock is held (`_guard`), as every transport's `read_sock`
            // needs; `desc.arg.data` points to `actor`, which outlives the call, and
            // `read_actor` is the only user of it.
            let ret =
                unsafe { b::kcmrs_read_sock(self.sock.as_ptr(), &mut desc, Some(read_actor)) };
            match kernel::error::to_result(ret) {
                // The actor stopped.
                Ok(()) if desc.count == 0 => return Ok(false),
                // Read something, and the actor wants more.
                Ok(()) if ret > 0 => {}
                // Nothing left. Under the socket lock arriving segments wait in the backlog, so
                // no byte can come between the empty read and this check.
                Ok(()) => return Ok(self.peer_done()),
                // Nothing to read now (TLS: no whole record yet, or a user's read is under way).
                Err(e) if e == EAGAIN => return Ok(false),
                Err(e) => return Err(e),
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
    // SAFETY: `read_sock` lends `skb` with `len` bytes from `offset` for this call.
    let chunk = unsafe { SkbChunk::new(skb, offset as usize, len) };
    let used = actor(&chunk).min(len);
    if used == 0 {
        // SAFETY: `desc` is valid for the call.
        unsafe { (*desc).count = 0 };
    }
    used as c_int
}

/// Runs `f` with the psock of `sk`, if the socket still has one.
///
/// # Safety
///
/// `sk` must be a live sock.
unsafe fn with_psock(sk: *mut b::sock, f: impl FnOnce(Arc<Psock>)) -> bool {
    // SAFETY: `sk` is live; the read lock keeps `sk_user_data` and its reference in place.
    let user_data = unsafe { b::kcmrs_sk_user_data_lock(sk) };
    let found = !user_data.is_null();
    if found {
        // SAFETY: `sk_user_data` holds a reference of an `Arc<Psock>` (`take_callbacks`), which
        // unattach only gives up after `restore_callbacks`, under the write lock.
        let psock: Arc<Psock> =
            unsafe { kernel::sync::ArcBorrow::from_raw(user_data.cast::<Psock>()) }.into();
        f(psock);
    }
    // SAFETY: Taken above.
    unsafe { b::kcmrs_sk_user_data_unlock(sk) };
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
    // SAFETY: `sk` is live.
    let found = unsafe { with_psock(sk, Psock::data_ready) };
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
