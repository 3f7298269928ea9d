// SPDX-License-Identifier: GPL-2.0

//! [`Mux`]: a multiplexor, shared by the KCM sockets of one `socket()` call and its clones,
//! and the TCP sockets (psocks) attached to it.
//!
//! Receive steering: a whole message goes to one member that can receive (not
//! KCM_RECV_DISABLE): first one with a waiting reader and nothing queued, otherwise the next,
//! round robin, whose receive buffer has room. The messages that follow in the same receive
//! run of a psock (they arrived together) go to that member too while it has room
//! ([`RunReceiver`]): one reader wakes for them, and takes them one after the other without
//! sleeping, instead of each waking a reader of its own (a context switch each). With no member
//! that can take it, the message stays with its psock, which stops reading, or (requeued from a
//! closing or disabled socket) in the multiplexor's hold queue, until room appears.
//!
//! A psock hands over several messages of one run of its receive work together: one round trip
//! of the multiplexor's lock, and one wake-up per KCM socket that got messages, made after the
//! lock is released (a woken reader does not run into it). A reader that takes a message
//! looks at the multiplexor only when something waits for room ([`Mux::message_consumed`]).

use crate::ffi::kcm_sk::{KcmSk, KcmSkRef};
use crate::ffi::lock::{new_spinlock_bh, SpinLockBh, SpinLockBhGuard};
use crate::ffi::skb::Skb;
use crate::net_state::NetState;
use crate::psock::{Psock, PsockMemory, SendLimits, TxError};
use crate::stats::{MuxStats, PsockStats, SockStats};
use crate::timeo::wait_within;
use kernel::prelude::*;
use kernel::sync::atomic::{Atomic, Relaxed};
use kernel::sync::barrier::smp_mb;
use kernel::sync::{Arc, CondVar};

/// KCM sockets whose readers one delivery wakes after the multiplexor's lock is released; more
/// than this many are woken at once, under it.
const DEFERRED_WAKEUPS: usize = 4;

/// The KCM sockets a delivery gave messages to.
struct Wakeups {
    socks: [Option<KcmSkRef>; DEFERRED_WAKEUPS],
}

impl Wakeups {
    fn new() -> Self {
        Self {
            socks: [const { None }; DEFERRED_WAKEUPS],
        }
    }

    /// `sk` got a message; called under the multiplexor's lock, which keeps it a member.
    fn add(&mut self, sk: KcmSk) {
        if self.socks.iter().flatten().any(|held| held.is(sk)) {
            return;
        }
        match self.socks.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(sk.get_ref()),
            None => sk.wake_readers(),
        }
    }

    /// Wakes the readers; called without kcm-rs locks held.
    fn wake(self) {
        for sk in self.socks.iter().flatten() {
            sk.wake_readers();
        }
    }
}

/// The member that got the messages of a psock's receive run so far: the next ones go to it
/// while it has room. (net/kcm likewise reserves one socket for each read of a psock.) A run
/// that can spread its messages no further than one socket's receive buffer: a reader that
/// wants fewer messages queued on its socket at a time sets a smaller SO_RCVBUF.
#[derive(Default)]
pub(crate) struct RunReceiver {
    /// The member's index; it may have left since.
    index: Option<u32>,
}

/// One KCM socket as the multiplexor sees it.
struct Member {
    /// Index of the socket in the multiplexor, as shown in /proc/net/kcm: the lowest free one.
    index: u32,
    /// KCM_RECV_DISABLE: no message is steered to this socket.
    recv_disabled: bool,
    sk: KcmSk,
    stats: Arc<SockStats>,
}

/// What the multiplexor's lock protects.
struct MuxState {
    /// The KCM sockets, sorted by index.
    members: KVec<Member>,
    /// The attached psocks, sorted by index.
    psocks: KVec<Arc<Psock>>,
    /// Psocks an unattach has taken out of `psocks` and not finished with (it waits for a
    /// message being written): another unattach of the same socket gets EALREADY meanwhile.
    unattaching: KVec<Arc<Psock>>,
    /// Messages that no member could take, oldest first.
    held: KVec<Skb>,
    /// Where the next receive and transmit searches start.
    next_rx: usize,
    next_tx: usize,
    /// The last member left: no psock may be attached any more.
    closed: bool,
}

impl MuxState {
    fn find_member(&self, index: u32) -> Option<usize> {
        self.members.binary_search_by_key(&index, |m| m.index).ok()
    }

    /// Messages queued on the member with `index`. Only deliveries, under the multiplexor's
    /// lock, add to a member's queue: under the lock the count can only fall.
    fn queued_on(&self, index: u32) -> usize {
        self.find_member(index)
            .map_or(0, |pos| self.members[pos].sk.queue_len())
    }

    /// The member the next message goes to, if any can receive.
    fn pick_receiver(&mut self) -> Option<KcmSk> {
        self.pick_position().map(|pos| self.members[pos].sk)
    }

    /// The member with `index`, if it can take one more message.
    fn receiver_with_room(&self, index: u32) -> Option<KcmSk> {
        let member = &self.members[self.find_member(index)?];
        (!member.recv_disabled && member.sk.has_room()).then_some(member.sk)
    }

    /// Where in `members` the member the next message goes to is, if any can receive.
    fn pick_position(&mut self) -> Option<usize> {
        let n = self.members.len();
        let eligible = |m: &Member| !m.recv_disabled;
        let order = (0..n).map(|i| (self.next_rx + i) % n);
        let pick = order
            .clone()
            .find(|&i| {
                let m = &self.members[i];
                eligible(m) && m.sk.has_waiter() && m.sk.queue_is_empty()
            })
            .or_else(|| {
                order
                    .clone()
                    .find(|&i| eligible(&self.members[i]) && self.members[i].sk.has_room())
            })?;
        self.next_rx = (pick + 1) % n;
        Some(pick)
    }

    /// Hands held messages to members while they can take them.
    fn drain_held(&mut self) {
        while !self.held.is_empty() {
            let Some(sk) = self.pick_receiver() else {
                return;
            };
            if let Ok(msg) = self.held.remove(0) {
                sk.deliver(msg);
            }
        }
    }

    /// Hands the messages queued on `sk` (closing, or out of steering) to the other members
    /// that can take them, and holds the rest. A SOCK_SEQPACKET message a reader of `sk` has
    /// begun is not moved: another socket's reader would get its tail only. It stays on `sk`
    /// when `sk` stays, and goes with it when it closes (`closing`).
    fn requeue_from(&mut self, sk: KcmSk, closing: bool) {
        let mut begun = None;
        while let Some(msg) = sk.take_queued() {
            if msg.read_offset() > 0 {
                begun = (!closing).then_some(msg);
                continue;
            }
            match self.pick_receiver() {
                Some(other) => other.deliver(msg),
                None => self.hold(msg),
            }
        }
        // The queue is empty and deliveries take the lock we hold: it goes back at the head.
        // (Room in `held` for the whole queue was made before: `Mux::lock_with_room`.)
        if let Some(msg) = begun {
            sk.deliver(msg);
        }
    }

    /// Reserves the next free psock, round robin.
    fn reserve_free_psock(&mut self) -> Option<Arc<Psock>> {
        let n = self.psocks.len();
        let start = self.next_tx;
        let i = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.psocks[i].try_reserve())?;
        self.next_tx = (i + 1) % n;
        Some(self.psocks[i].clone())
    }

    /// Keeps a message for the next member with room; the caller made room in `held`
    /// ([`Mux::lock_with_room`]). A multiplexor that has ended has no member any more: the
    /// message is dropped.
    fn hold(&mut self, msg: Skb) {
        if self.closed {
            return;
        }
        // Cannot fail: room was made.
        let _ = self.held.push_within_capacity(msg);
    }
}

/// The lowest index not in `used` (sorted ascending).
fn lowest_free_index(used: impl Iterator<Item = u32>) -> Result<(usize, u32)> {
    let mut pos = 0usize;
    for index in used {
        if index as usize != pos {
            break;
        }
        pos += 1;
    }
    Ok((pos, u32::try_from(pos)?))
}

/// A KCM socket's line in /proc/net/kcm.
pub(crate) struct MemberReport {
    pub(crate) index: u32,
    pub(crate) stats: Arc<SockStats>,
    /// Messages queued, receive memory charged.
    pub(crate) queue: (i32, i32),
    /// A reader waits and nothing is queued.
    pub(crate) rx_wait: bool,
}

/// What /proc/net/kcm shows of a multiplexor, taken under its lock.
pub(crate) struct MuxReport {
    pub(crate) members: KVec<MemberReport>,
    pub(crate) psocks: KVec<Arc<Psock>>,
}

/// A multiplexor.
#[pin_data]
pub(crate) struct Mux {
    net: Arc<NetState>,
    stats: MuxStats,
    /// A psock or a held message may wait for room: a reader that takes a message calls
    /// [`Mux::room_available`]. Set under `state` before the last check for room (with a full
    /// barrier between), cleared under `state` when nothing waits any more.
    room_wanted: Atomic<bool>,
    /// Senders waiting on `psock_free` for a psock. Changed under `state`; a psock's release
    /// reads it without the lock ([`Mux::psock_released`]).
    senders_waiting: Atomic<u32>,
    /// Sums of the psocks that were unattached.
    departed_psocks: PsockStats,
    #[pin]
    state: SpinLockBh<MuxState>,
    /// Senders wait here for a psock to become free or to be attached.
    #[pin]
    psock_free: CondVar,
}

impl Mux {
    /// Creates a multiplexor in `net` and registers it there.
    pub(crate) fn new(net: Arc<NetState>) -> Result<Arc<Self>> {
        let mux_net = net.clone();
        let mux = Arc::pin_init(
            pin_init!(Self {
                net: mux_net,
                stats: MuxStats::default(),
                room_wanted: Atomic::new(false),
                senders_waiting: Atomic::new(0),
                departed_psocks: PsockStats::default(),
                state <- new_spinlock_bh!(
                    MuxState {
                        members: KVec::new(),
                        psocks: KVec::new(),
                        unattaching: KVec::new(),
                        held: KVec::new(),
                        next_rx: 0,
                        next_tx: 0,
                        closed: false,
                    },
                    "Mux::state"
                ),
                psock_free <- kernel::new_condvar!("Mux::psock_free"),
            }),
            GFP_KERNEL,
        )?;
        net.add_mux(mux.clone())?;
        Ok(mux)
    }

    /// Takes the multiplexor's lock with room in the vector `vec` of its state for `extra`
    /// more items (as counted under the lock). `state` is a spinlock that softirq takes: the
    /// memory is allocated with the lock released, and the count is checked again.
    fn lock_with_room<T>(
        &self,
        vec: impl Fn(&mut MuxState) -> &mut KVec<T>,
        extra: impl Fn(&MuxState) -> usize,
    ) -> Result<SpinLockBhGuard<'_, MuxState>> {
        loop {
            let mut st = self.state.lock();
            let need = vec(&mut st).len() + extra(&st);
            if vec(&mut st).capacity() >= need {
                return Ok(st);
            }
            drop(st);
            let mut fresh = KVec::with_capacity(need, GFP_KERNEL)?;
            let mut st = self.state.lock();
            let need = vec(&mut st).len() + extra(&st);
            if fresh.capacity() < need {
                continue;
            }
            let old = vec(&mut st);
            for item in old.drain_all() {
                // Cannot fail: `fresh` has room for all of them.
                let _ = fresh.push_within_capacity(item);
            }
            *old = fresh;
            return Ok(st);
        }
    }

    /// Adds the KCM socket `sk`; returns its index.
    pub(crate) fn join(&self, sk: KcmSk, stats: Arc<SockStats>) -> Result<u32> {
        let mut st = self.lock_with_room(|st| &mut st.members, |_| 1)?;
        let (pos, index) = lowest_free_index(st.members.iter().map(|m| m.index))?;
        let member = Member {
            index,
            recv_disabled: false,
            sk,
            stats,
        };
        // Cannot fail: `pos` is at most the length and room was reserved.
        st.members
            .insert_within_capacity(pos, member)
            .map_err(|_| EINVAL)?;
        drop(st);
        self.room_available();
        Ok(index)
    }

    /// Removes the KCM socket with `index`. Messages queued on it that no reader took go to
    /// the other members. The last member to leave ends the multiplexor: its psocks are
    /// unattached and it leaves the namespace's list.
    pub(crate) fn leave(&self, index: u32) {
        // With no room for its messages, they are dropped: the socket is closing, and its
        // release cannot fail.
        let mut st = self
            .lock_with_room(|st| &mut st.held, |st| st.queued_on(index))
            .unwrap_or_else(|_| self.state.lock());
        let Some(pos) = st.find_member(index) else {
            return;
        };
        let Ok(member) = st.members.remove(pos) else {
            return;
        };
        st.requeue_from(member.sk, true);
        if st.members.is_empty() {
            self.end(st);
        } else {
            self.note_held(&mut st);
        }
    }

    /// Ends a multiplexor that has no member (its first socket failed to join).
    pub(crate) fn abandon_if_empty(&self) {
        let st = self.state.lock();
        if st.members.is_empty() && !st.closed {
            self.end(st);
        }
    }

    /// Ends the multiplexor, whose last member has gone: its psocks are unattached, held
    /// messages (which no reader took) are freed, and it leaves the namespace's list.
    fn end(&self, mut st: SpinLockBhGuard<'_, MuxState>) {
        st.closed = true;
        let psocks = core::mem::take(&mut st.psocks);
        let held = core::mem::take(&mut st.held);
        drop(st);
        // Freed outside the lock.
        drop(held);
        for psock in psocks.iter() {
            psock.stop();
            self.psock_gone(psock);
        }
        self.psock_free.notify_all();
        self.net
            .remove_mux(self, &self.stats, &self.departed_psocks);
    }

    /// Sets KCM_RECV_DISABLE of the member with `index`. Disabling moves the messages queued on
    /// it to the other members (or holds them); the caller holds the socket's lock, so no read
    /// of it is under way.
    pub(crate) fn set_recv_disabled(&self, index: u32, disabled: bool) -> Result {
        let mut st = if disabled {
            self.lock_with_room(|st| &mut st.held, |st| st.queued_on(index))?
        } else {
            self.state.lock()
        };
        let Some(pos) = st.find_member(index) else {
            return Ok(());
        };
        st.members[pos].recv_disabled = disabled;
        if disabled {
            let sk = st.members[pos].sk;
            st.requeue_from(sk, false);
            self.note_held(&mut st);
        }
        drop(st);
        if !disabled {
            self.room_available();
        }
        Ok(())
    }

    pub(crate) fn recv_disabled(&self, index: u32) -> bool {
        let st = self.state.lock();
        st.find_member(index)
            .is_some_and(|pos| st.members[pos].recv_disabled)
    }

    /// Hands whole messages from `psock`, oldest first, to members, and wakes their readers
    /// once the lock is released. `run` is the member that got the earlier messages of the
    /// psock's receive run; it gets these too while it has room. Returns whether all were
    /// taken. Those no member can take stay in `msgs`, and the psock's receive work is queued
    /// again once room appears.
    pub(crate) fn deliver(
        &self,
        msgs: &mut KVec<Skb>,
        psock: &Arc<Psock>,
        run: &mut RunReceiver,
    ) -> bool {
        if msgs.is_empty() {
            return true;
        }
        let mut wakeups = Wakeups::new();
        let mut st = self.state.lock();
        st.drain_held();
        // Held messages are older: while some wait, newer ones wait behind them.
        if st.held.is_empty() {
            while !msgs.is_empty() {
                let same = run.index.and_then(|index| st.receiver_with_room(index));
                let Some(sk) = same.or_else(|| {
                    let pos = self.pick_position_or_want_room(&mut st)?;
                    run.index = Some(st.members[pos].index);
                    Some(st.members[pos].sk)
                }) else {
                    break;
                };
                let Ok(msg) = msgs.remove(0) else {
                    break;
                };
                self.stats.rx.count(msg.len());
                sk.enqueue(msg);
                wakeups.add(sk);
            }
        }
        let all_taken = msgs.is_empty();
        if !all_taken {
            psock.set_rx_stalled(true);
        }
        drop(st);
        wakeups.wake();
        all_taken
    }

    /// Where the member the next message goes to is. With none, the multiplexor notes that
    /// room is wanted and looks once more: a reader that freed room in between either is seen
    /// here or sees `room_wanted` ([`Mux::message_consumed`]).
    fn pick_position_or_want_room(&self, st: &mut MuxState) -> Option<usize> {
        st.pick_position().or_else(|| {
            self.room_wanted.store(true, Relaxed);
            smp_mb();
            st.pick_position()
        })
    }

    /// Held messages may be left after a change of members: note that room is wanted, then
    /// hand over what fits now (see [`Mux::pick_position_or_want_room`]).
    fn note_held(&self, st: &mut MuxState) {
        if st.held.is_empty() {
            return;
        }
        self.room_wanted.store(true, Relaxed);
        smp_mb();
        st.drain_held();
    }

    /// Keeps the whole messages of an unattached psock for the next members with room. Without
    /// memory for them they are dropped (unattach cannot fail).
    pub(crate) fn hold_all(&self, msgs: &mut KVec<Skb>) {
        if msgs.is_empty() {
            return;
        }
        let mut st = self
            .lock_with_room(|st| &mut st.held, |_| msgs.len())
            .unwrap_or_else(|_| self.state.lock());
        for msg in msgs.drain_all() {
            st.hold(msg);
        }
        self.note_held(&mut st);
    }

    /// A reader took a message off a member's queue. Only when a psock or a held message waits
    /// for room does that cost a round trip of the multiplexor's lock.
    pub(crate) fn message_consumed(&self) {
        // Orders the freed receive memory before the look at `room_wanted`; pairs with the
        // barrier in `pick_position_or_want_room` and `note_held`.
        smp_mb();
        if self.room_wanted.load(Relaxed) {
            self.room_available();
        }
    }

    /// A member may take messages again (it read one, was enabled or joined).
    pub(crate) fn room_available(&self) {
        let mut st = self.state.lock();
        st.drain_held();
        for psock in st.psocks.iter().filter(|p| p.rx_stalled()) {
            psock.set_rx_stalled(false);
            Psock::kick(psock.clone());
        }
        // A psock queued again sets it anew if it still finds no room.
        if st.held.is_empty() {
            self.room_wanted.store(false, Relaxed);
        }
    }

    /// Attaches `stream`, whose ULP slot the caller claimed, as a psock parsed by `prog`; it
    /// starts receiving. EALREADY when the socket has another owner. On failure the slot is
    /// given back.
    pub(crate) fn attach(
        self: &Arc<Self>,
        stream: crate::ffi::stream::StreamSocket,
        prog: crate::ffi::bpf::BpfProg,
    ) -> Result {
        // The stream's lock is not taken under the multiplexor's (lock order).
        let give_back =
            |stream: &crate::ffi::stream::StreamSocket| stream.release_ulp_slot(&stream.lock());
        let memory = match PsockMemory::new() {
            Ok(memory) => memory,
            Err(e) => {
                give_back(&stream);
                return Err(e);
            }
        };
        let place = self
            .lock_with_room(|st| &mut st.psocks, |_| 1)
            .and_then(|st| {
                if st.closed {
                    return Err(ENOENT);
                }
                let place = lowest_free_index(st.psocks.iter().map(|p| p.index()))?;
                Ok((st, place))
            });
        let (mut st, (pos, index)) = match place {
            Ok(found) => found,
            Err(e) => {
                give_back(&stream);
                return Err(e);
            }
        };
        let psock = Psock::new(memory, stream, prog, self.clone(), index);
        if let Err(e) = psock.start() {
            drop(st);
            give_back(psock.stream());
            return Err(e);
        }
        // Cannot fail: `pos` is at most the length and room was made.
        let _ = st.psocks.insert_within_capacity(pos, psock);
        drop(st);
        self.stats.psock_attach.inc();
        self.psock_changed();
        Ok(())
    }

    /// Unattaches the psock of the same socket as `stream`; ENOENT when there is none, EALREADY
    /// while another unattach of it is under way (as net/kcm).
    pub(crate) fn unattach(&self, stream: &crate::ffi::stream::StreamSocket) -> Result {
        let mut st = self.lock_with_room(|st| &mut st.unattaching, |_| 1)?;
        let Some(pos) = st
            .psocks
            .iter()
            .position(|p| p.stream().same_socket(stream))
        else {
            let under_way = st
                .unattaching
                .iter()
                .any(|p| p.stream().same_socket(stream));
            return Err(if under_way {
                crate::ffi::errno::ealready()
            } else {
                ENOENT
            });
        };
        let psock = st.psocks.remove(pos).map_err(|_| ENOENT)?;
        // Cannot fail: room was made.
        let _ = st.unattaching.push_within_capacity(psock.clone());
        drop(st);
        if psock.status().reserved {
            self.stats.psock_unattach_rsvd.inc();
        }
        psock.stop();
        // Unlike net/kcm, which leaves part of a message on the stream, a message being sent
        // on the socket is finished before the socket is given back.
        psock.wait_tx_idle();
        self.psock_gone(&psock);
        let mut st = self.state.lock();
        let done = st
            .unattaching
            .iter()
            .position(|p| Arc::ptr_eq(p, &psock))
            .and_then(|pos| st.unattaching.remove(pos).ok());
        drop(st);
        // Not the last reference (`psock` is one): dropped outside the lock all the same.
        drop(done);
        Ok(())
    }

    /// Keeps the counters of an unattached psock.
    fn psock_gone(&self, psock: &Psock) {
        self.stats.psock_unattach.inc();
        psock.stats().add_to(&self.departed_psocks);
    }

    pub(crate) fn stats(&self) -> &MuxStats {
        &self.stats
    }

    pub(crate) fn departed_psocks(&self) -> &PsockStats {
        &self.departed_psocks
    }

    /// A snapshot for /proc/net/kcm. The memory for it is allocated without the lock held.
    pub(crate) fn report(&self) -> Result<MuxReport> {
        loop {
            let (n_members, n_psocks) = {
                let st = self.state.lock();
                (st.members.len(), st.psocks.len())
            };
            let mut members = KVec::with_capacity(n_members, GFP_KERNEL)?;
            let mut psocks = KVec::with_capacity(n_psocks, GFP_KERNEL)?;
            let st = self.state.lock();
            if st.members.len() > members.capacity() || st.psocks.len() > psocks.capacity() {
                continue;
            }
            for m in st.members.iter() {
                let queue = m.sk.queue_state();
                let report = MemberReport {
                    index: m.index,
                    stats: m.stats.clone(),
                    queue,
                    rx_wait: queue.0 == 0 && m.sk.has_waiter(),
                };
                // Cannot fail: room was checked.
                let _ = members.push_within_capacity(report);
            }
            for p in st.psocks.iter() {
                let _ = psocks.push_within_capacity(p.clone());
            }
            return Ok(MuxReport { members, psocks });
        }
    }

    /// A psock was attached, freed or broke: wake senders waiting for one. The lock orders the
    /// wake-up after a waiter's check, so none is lost.
    pub(crate) fn psock_changed(&self) {
        let _st = self.state.lock();
        self.psock_free.notify_all();
    }

    /// A reserved psock was released: wake a sender waiting for one. Without waiters that
    /// costs no lock: a sender about to wait counts itself first and then looks at the psocks
    /// once more ([`Mux::reserve_psock`]), so either it sees this psock free, or this sees it.
    pub(crate) fn psock_released(&self) {
        // Orders the cleared reservation before the look at the count.
        smp_mb();
        if self.senders_waiting.load(Relaxed) != 0 {
            self.psock_changed();
        }
    }

    /// Reserves a psock for one message, waiting up to `timeo` jiffies unless `nonblock`.
    fn reserve_psock(&self, nonblock: bool, timeo: &mut isize) -> Result<Arc<Psock>> {
        let mut st = self.state.lock();
        if let Some(psock) = st.reserve_free_psock() {
            return Ok(psock);
        }
        if nonblock {
            return Err(EAGAIN);
        }
        // Counted, under the lock, before the last look (pairs with `psock_released`).
        let waiting = self.senders_waiting.load(Relaxed);
        self.senders_waiting.store(waiting + 1, Relaxed);
        smp_mb();
        let reserved = loop {
            if let Some(psock) = st.reserve_free_psock() {
                break Ok(psock);
            }
            if let Err(e) = wait_within(&self.psock_free, &mut st, nonblock, timeo) {
                break Err(e);
            }
        };
        let waiting = self.senders_waiting.load(Relaxed);
        self.senders_waiting.store(waiting - 1, Relaxed);
        reserved
    }

    /// Sends one whole message on some psock. A psock that fails in the middle of it is out
    /// of service and the message goes again, from its start, on another.
    pub(crate) fn transmit(&self, msg: &[u8], limits: &SendLimits, timeo: &mut isize) -> Result {
        loop {
            let psock = self.reserve_psock(limits.nonblock, timeo)?;
            let result = psock.send_message(msg, limits, timeo);
            psock.release();
            match result {
                Ok(()) => {
                    self.stats.tx.count(msg.len());
                    return Ok(());
                }
                Err(TxError::WouldBlock) => return Err(EAGAIN),
                Err(TxError::Interrupted(e)) => return Err(e),
                Err(TxError::Broken) => self.stats.tx_retries.inc(),
            }
        }
    }

    /// Reserves a psock for a batch of messages (MSG_BATCH); it stays corked until
    /// [`Mux::end_batch`].
    pub(crate) fn begin_batch(&self, nonblock: bool, timeo: &mut isize) -> Result<Arc<Psock>> {
        let psock = self.reserve_psock(nonblock, timeo)?;
        psock.set_cork(true);
        Ok(psock)
    }

    /// Pushes and releases the psock of a batch.
    pub(crate) fn end_batch(&self, psock: Arc<Psock>) {
        psock.set_cork(false);
        psock.release();
    }
}
