// SPDX-License-Identifier: GPL-2.0

//! [`KcmSk`]: the `struct sock` of a KCM socket, as the multiplexor and the receive path use it:
//! its receive queue of whole messages, its receive buffer, its readers.

use super::bindings as b;
use super::skb::Skb;
use kernel::prelude::*;

/// The sock of a KCM socket that is a member of a multiplexor.
///
/// # Invariants
///
/// `self.0` is a live KCM `struct sock`: the socket's `KcmSock` (which the multiplexor's
/// member record belongs to) is dropped at release before the sock is put.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct KcmSk(*mut b::sock);

// SAFETY: The sock is used only through its own locks and atomic counters.
unsafe impl Send for KcmSk {}
// SAFETY: As above.
unsafe impl Sync for KcmSk {}

/// The socket lock of a KCM socket (`lock_sock`): one reader at a time.
pub(crate) struct KcmSkGuard(KcmSk);

impl Drop for KcmSkGuard {
    fn drop(&mut self) {
        // SAFETY: Taken in `KcmSk::lock`.
        unsafe { b::release_sock(self.0 .0) };
    }
}

/// A reference on a KCM sock (`sock_hold`): its readers can be woken after the multiplexor's
/// lock is released, when the socket may have closed and left the multiplexor meanwhile.
///
/// # Invariants
///
/// `self.0` is a sock that this value holds one reference of.
pub(crate) struct KcmSkRef(*mut b::sock);

// SAFETY: A sock reference can be used and put from any thread.
unsafe impl Send for KcmSkRef {}

impl KcmSkRef {
    /// The reference is on `sk`.
    pub(crate) fn is(&self, sk: KcmSk) -> bool {
        self.0 == sk.0
    }

    /// Wakes the readers of the socket, if it still has any.
    pub(crate) fn wake_readers(&self) {
        // SAFETY: The sock is live: we hold a reference (type invariant). A closed socket's
        // sock has no wait queue any more, and `sk_data_ready` then wakes nobody.
        unsafe { b::kcmrs_sk_data_ready(self.0) };
    }
}

impl Drop for KcmSkRef {
    fn drop(&mut self) {
        // SAFETY: We hold one reference (type invariant).
        unsafe { b::kcmrs_sock_put(self.0) };
    }
}

/// The pipe of a `splice_read` call.
///
/// # Invariants
///
/// `self.0` is the pipe passed to `splice_read`, valid until the call returns.
pub(crate) struct SplicePipe(*mut b::pipe_inode_info);

impl SplicePipe {
    /// # Safety
    ///
    /// `pipe` must be `splice_read`'s pipe, and the value must not outlive the call.
    pub(crate) unsafe fn from_raw(pipe: *mut b::pipe_inode_info) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self(pipe)
    }
}

/// The message at the head of a receive queue, lent while the socket lock is held.
pub(crate) struct QueuedMessage<'a> {
    skb: core::mem::ManuallyDrop<Skb>,
    _guard: &'a KcmSkGuard,
}

impl core::ops::Deref for QueuedMessage<'_> {
    type Target = Skb;
    fn deref(&self) -> &Skb {
        &self.skb
    }
}

impl core::ops::DerefMut for QueuedMessage<'_> {
    fn deref_mut(&mut self) -> &mut Skb {
        &mut self.skb
    }
}

impl KcmSk {
    /// # Safety
    ///
    /// `sk` must be a KCM sock that stays live while the value (and its copies) are used: the
    /// caller stores it only in the `KcmSock` of that sock.
    pub(crate) unsafe fn from_raw(sk: *mut b::sock) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self(sk)
    }

    fn queue(self) -> *mut b::sk_buff_head {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sk_receive_queue(self.0) }
    }

    /// The receive buffer has room: what is queued is below SO_RCVBUF. A message larger than
    /// the buffer can still be queued on an empty socket.
    pub(crate) fn has_room(self) -> bool {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sk_rmem_alloc(self.0) < b::kcmrs_sk_rcvbuf(self.0) }
    }

    /// A reader waits on the socket (blocked in recv, poll or epoll).
    pub(crate) fn has_waiter(self) -> bool {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sk_has_sleeper(self.0) }
    }

    /// Messages queued and receive memory charged (for /proc).
    pub(crate) fn queue_state(self) -> (i32, i32) {
        // SAFETY: The sock is live by the type invariant; racy reads are fine for /proc.
        unsafe {
            (
                b::kcmrs_sk_receive_qlen(self.0),
                b::kcmrs_sk_rmem_alloc(self.0),
            )
        }
    }

    /// Messages queued.
    pub(crate) fn queue_len(self) -> usize {
        // SAFETY: The sock is live by the type invariant; the count is read once.
        unsafe { b::kcmrs_sk_receive_qlen(self.0) }.max(0) as usize
    }

    pub(crate) fn queue_is_empty(self) -> bool {
        // SAFETY: The queue of a live sock; a racy read is fine for a steering hint.
        unsafe { b::kcmrs_skb_peek(self.queue()).is_null() }
    }

    /// Queues a whole message for the readers of this socket and wakes them.
    pub(crate) fn deliver(self, msg: Skb) {
        self.enqueue(msg);
        self.wake_readers();
    }

    /// Queues a whole message for the readers of this socket without waking them: the caller
    /// wakes them ([`KcmSk::wake_readers`], [`KcmSkRef::wake_readers`]).
    pub(crate) fn enqueue(self, msg: Skb) {
        let skb = msg.into_raw();
        // SAFETY: The sock is live; the buffer is ours, on no list and charged to no socket
        // (see `take_queued`). `skb_set_owner_r` charges this one, and the charge goes when the
        // buffer is freed.
        unsafe {
            b::kcmrs_skb_set_owner_r(skb, self.0);
            b::skb_queue_tail(self.queue(), skb);
        }
    }

    /// Wakes the readers of the socket (recv, poll, epoll).
    pub(crate) fn wake_readers(self) {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sk_data_ready(self.0) };
    }

    /// A reference on the sock, which keeps it live after its socket is closed.
    pub(crate) fn get_ref(self) -> KcmSkRef {
        // SAFETY: The sock is live by the type invariant; the reference is put on drop.
        unsafe { b::kcmrs_sock_hold(self.0) };
        // INVARIANT: We took a reference just above.
        KcmSkRef(self.0)
    }

    /// Takes the message at the head of the queue (for requeueing it elsewhere). Its
    /// receive-memory charge on this socket goes with it: the message may be held by the
    /// multiplexor after this socket is freed.
    pub(crate) fn take_queued(self) -> Option<Skb> {
        // SAFETY: The queue of a live sock; `skb_dequeue` takes the queue lock.
        let skb = unsafe { b::kcmrs_skb_dequeue(self.queue()) };
        if skb.is_null() {
            return None;
        }
        // SAFETY: A dequeued buffer is ours, on no list; orphaning it runs `sock_rfree` while
        // this sock is live.
        unsafe { b::kcmrs_skb_orphan(skb) };
        // SAFETY: As above.
        Some(unsafe { Skb::from_raw(skb) })
    }

    /// Takes the socket lock.
    pub(crate) fn lock(self) -> KcmSkGuard {
        // SAFETY: The sock is live; process context.
        unsafe { b::kcmrs_lock_sock(self.0) };
        KcmSkGuard(self)
    }

    /// The message at the head of the queue. Only holders of the socket lock take messages
    /// off the head, so it stays there while `guard` is held.
    pub(crate) fn peek(self, guard: &KcmSkGuard) -> Option<QueuedMessage<'_>> {
        // SAFETY: The queue of a live sock; `skb_peek` reads the head under our lock.
        let skb = unsafe { b::kcmrs_skb_peek(self.queue()) };
        if skb.is_null() {
            return None;
        }
        Some(QueuedMessage {
            // SAFETY: The buffer stays queued (and owned by the queue) while `guard` is held;
            // `ManuallyDrop` keeps us from freeing it.
            skb: core::mem::ManuallyDrop::new(unsafe { Skb::from_raw(skb) }),
            _guard: guard,
        })
    }

    /// Removes the head message (returned by `peek` under the same `guard`) and frees it,
    /// which gives its receive-memory charge back.
    pub(crate) fn consume_head(self, _guard: &KcmSkGuard) {
        if let Some(msg) = self.take_queued() {
            drop(msg);
        }
    }

    /// Splices up to `len` bytes of the queued message `msg` from `offset` into `pipe`.
    pub(crate) fn splice(
        self,
        msg: &QueuedMessage<'_>,
        offset: usize,
        pipe: &SplicePipe,
        len: usize,
    ) -> Result<usize> {
        // SAFETY: The buffer is queued on this live sock and stays while the lock is held
        // (`msg` borrows the guard); the pipe is the splice call's.
        let ret = unsafe {
            b::kcmrs_skb_splice(
                msg.as_ptr(),
                self.0,
                (msg.data_start() + offset) as u32,
                pipe.0,
                len as u32,
                b::SPLICE_F_NONBLOCK,
            )
        };
        if ret < 0 {
            return Err(Error::from_errno(ret as i32));
        }
        Ok(ret as usize)
    }

    /// SO_SNDBUF of the KCM socket.
    pub(crate) fn sndbuf(self) -> usize {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sk_sndbuf(self.0) }.max(0) as usize
    }

    /// The receive timeout in jiffies (0 for non-blocking).
    pub(crate) fn rcvtimeo(self, nonblock: bool) -> isize {
        // SAFETY: The sock is live by the type invariant.
        unsafe { b::kcmrs_sock_rcvtimeo(self.0, nonblock) }
    }

    /// Sleeps until a message may be queued, the timeout passes (`*timeo` becomes 0), a
    /// signal arrives or the socket has an error.
    pub(crate) fn wait_for_message(self, timeo: &mut isize) -> Result {
        let mut err = 0;
        let queue = self.queue();
        // The wait returns at once unless the queue's last buffer is still `last`: for an
        // empty queue that is the queue head itself.
        let last = queue.cast::<b::sk_buff>().cast_const();
        // SAFETY: The sock is live; process context without locks held.
        let ret = unsafe { b::__skb_wait_for_more_packets(self.0, queue, &mut err, timeo, last) };
        if ret != 0 && err != 0 {
            return Err(Error::from_errno(err));
        }
        Ok(())
    }
}
