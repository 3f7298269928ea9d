// SPDX-License-Identifier: GPL-2.0

//! [`Psock`]: a TCP, MPTCP or kernel TLS socket attached to a multiplexor.
//!
//! Receive: the psock's receive state (framer, assembled messages) is protected by the
//! socket's own lock ([`AttachedStream`]). When bytes arrive on a plain TCP socket that no task
//! owns, `sk_data_ready` (softirq, under the socket's spinlock) reads them at once, as net/kcm's
//! stream parser does: a request reaches its reader with one wake-up. Otherwise (MPTCP, kernel
//! TLS, a socket a task owns, a softirq that could not allocate or used its budget) the callback
//! queues the psock's receive work, which reads under `lock_sock`. Either way the bytes go
//! through the [`Framer`]; the first whole message of a run goes to the multiplexor at once (a
//! reader may be waiting for just that reply), the following ones, up to [`RX_BATCH`], together
//! (one round trip of the multiplexor's lock and one wake-up per KCM socket for the batch). The
//! messages of one run go to the KCM socket the first went to while it has room.
//! When no KCM socket can take a message, the psock keeps it and stops reading, so TCP flow
//! control pushes back on the peer; the multiplexor queues the work again when room appears.
//!
//! Transmit: a sender reserves the psock (`PsockTx::busy`), writes one whole message and
//! releases it, so messages never interleave on the stream.

use crate::ffi::bpf::BpfProg;
use crate::ffi::lock::{new_spinlock_bh, SpinLockBh};
use crate::ffi::skb::{AllocContext, Skb};
use crate::ffi::stream::{AttachedGuard, AttachedStream, SoftirqLocked, StreamSocket};
use crate::ffi::workqueue;
use crate::framer::{Framer, StreamError};
use crate::mux::{Mux, RunReceiver};
use crate::stats::PsockStats;
use kernel::prelude::*;
use kernel::sync::atomic::{Atomic, Relaxed};
use kernel::sync::{Arc, CondVar, UniqueArc};
use kernel::time::{Delta, Instant, Monotonic};
use kernel::workqueue::{DelayedWork, Work, WorkItem};

/// A timeout in jiffies in milliseconds; `None` for "forever".
fn jiffies_to_ms(timeo: isize) -> Option<i64> {
    if timeo == isize::MAX {
        return None;
    }
    Some((timeo as i64).saturating_mul(1000) / i64::from(crate::ffi::bindings::HZ))
}

/// The current task was killed.
fn fatal_signal_pending() -> bool {
    crate::ffi::task::fatal_signal_pending()
}

/// Longest wait of the assembly timer; it is armed again while a message stays incomplete.
const TIMER_STEP_MS: i64 = 1000;

/// Bytes one run of the receive work takes from the stream before it queues itself again, so
/// that senders waiting for the TCP socket's lock and other psocks' work get their turn.
const RX_BUDGET: usize = 64 * 1024;

/// Whole messages a receive run assembles before it hands them to the multiplexor. A run in
/// softirq ends after one batch, and the work goes on: softirq is for the first messages
/// (request/response), not for a flood, which would keep the CPU from scheduling.
const RX_BATCH: usize = 32;

/// Bytes a receive run in softirq takes from the stream before the work goes on.
const RX_BUDGET_SOFTIRQ: usize = 16 * 1024;

/// Receive state, under the socket's lock.
pub(crate) struct PsockRx {
    framer: Framer,
    /// Whole messages not handed to the multiplexor yet, oldest first: those of the running
    /// receive work, or those no KCM socket could take yet. Room for [`RX_BATCH`] is reserved.
    assembled: KVec<Skb>,
    /// Unattached, or the stream broke: nothing more is read.
    stopped: bool,
    /// When the incomplete message began, and how many messages had completed then.
    message_started: Option<(Instant<Monotonic>, u64)>,
    /// The assembly timer is armed.
    timer_armed: bool,
}

/// Why a psock stops receiving.
enum Break {
    /// The framer failed: the parser's error, EMSGSIZE, ENOMEM, EPROTO.
    Parse(Error),
    /// A message took longer than the socket's SO_RCVTIMEO to arrive (ETIMEDOUT).
    Timeout,
    /// The peer closed or reset the stream, and everything before was parsed (EPIPE).
    PeerDone,
    /// Reading the socket failed.
    Transport(Error),
}

/// Transmit state.
struct PsockTx {
    /// A sender has the psock (for one message, or a MSG_BATCH batch).
    busy: bool,
    /// A sender is writing a message's bytes.
    writing: bool,
    /// The stream failed; no message is sent on it any more.
    broken: bool,
}

/// What bounds a sender: MSG_DONTWAIT, and the KCM socket's SO_SNDBUF.
pub(crate) struct SendLimits {
    pub(crate) nonblock: bool,
    pub(crate) sndbuf: usize,
}

/// Why a message did not go out on a psock.
pub(crate) enum TxError {
    /// Non-blocking and the psock has no room for the message: nothing was written.
    WouldBlock,
    /// The psock failed or is gone: send the message again elsewhere.
    Broken,
    /// A signal (or SO_SNDTIMEO) before any byte was written: give the error to the sender.
    Interrupted(Error),
}

/// What /proc/net/kcm shows of a psock's state.
pub(crate) struct PsockStatus {
    pub(crate) rx_stopped: bool,
    pub(crate) ready: bool,
    pub(crate) tx_broken: bool,
    pub(crate) reserved: bool,
}

/// Memory for one psock, allocated before its stream is handed over, so that building the
/// psock cannot fail once the stream is in it.
pub(crate) struct PsockMemory {
    psock: UniqueArc<core::mem::MaybeUninit<Psock>>,
    assembled: KVec<Skb>,
}

impl PsockMemory {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            psock: UniqueArc::new_uninit(GFP_KERNEL)?,
            assembled: KVec::with_capacity(RX_BATCH, GFP_KERNEL)?,
        })
    }
}

/// A TCP, MPTCP or kernel TLS socket attached to a multiplexor.
#[pin_data]
pub(crate) struct Psock {
    /// The socket, and the receive state its lock protects.
    stream: AttachedStream<PsockRx>,
    prog: BpfProg,
    mux: Arc<Mux>,
    /// Index in the multiplexor, as shown in /proc/net/kcm.
    index: u32,
    stats: PsockStats,
    /// The psock keeps a message no member could take and waits for room. Changed under
    /// `Mux::state`.
    rx_stalled: Atomic<bool>,
    #[pin]
    rx_work: Work<Psock>,
    /// Checks that a message is assembled within the TCP socket's SO_RCVTIMEO.
    #[pin]
    timeout_work: DelayedWork<Psock, 1>,
    #[pin]
    tx: SpinLockBh<PsockTx>,
    /// Signalled when a sender ends writing a message (`PsockTx::writing` goes false).
    #[pin]
    tx_idle: CondVar,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Psock { self.rx_work }
}

kernel::impl_has_delayed_work! {
    impl HasDelayedWork<Self, 1> for Psock { self.timeout_work }
}

impl WorkItem for Psock {
    type Pointer = Arc<Psock>;

    fn run(this: Arc<Psock>) {
        this.receive();
    }
}

impl WorkItem<1> for Psock {
    type Pointer = Arc<Psock>;

    fn run(this: Arc<Psock>) {
        workqueue::timer_fired();
        this.check_assembly_time();
    }
}

impl Psock {
    /// A psock for `stream` parsed by `prog`, built in `memory`; not yet receiving.
    pub(crate) fn new(
        memory: PsockMemory,
        stream: StreamSocket,
        prog: BpfProg,
        mux: Arc<Mux>,
        index: u32,
    ) -> Arc<Self> {
        let assembled = memory.assembled;
        let rx = PsockRx {
            framer: Framer::default(),
            assembled,
            stopped: false,
            message_started: None,
            timer_armed: false,
        };
        let built = memory.psock.write_pin_init(pin_init!(Self {
                stream: AttachedStream::new(stream, rx),
                prog,
                mux,
                index,
                stats: PsockStats::default(),
                rx_stalled: Atomic::new(false),
                rx_work <- kernel::new_work!("Psock::rx_work"),
                timeout_work <- kernel::new_delayed_work!("Psock::timeout_work"),
                tx <- new_spinlock_bh!(
                    PsockTx {
                        busy: false,
                        writing: false,
                        broken: false,
                    },
                    "Psock::tx"
                ),
                tx_idle <- kernel::new_condvar!("Psock::tx_idle"),
        }));
        match built {
            Ok(psock) => psock.into(),
            Err(never) => match never {},
        }
    }

    pub(crate) fn stream(&self) -> &StreamSocket {
        self.stream.socket()
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    pub(crate) fn stats(&self) -> &PsockStats {
        &self.stats
    }

    /// Marks the psock as waiting for room, or not; under `Mux::state`.
    pub(crate) fn set_rx_stalled(&self, stalled: bool) {
        self.rx_stalled.store(stalled, Relaxed);
    }

    /// The psock waits for room; under `Mux::state`.
    pub(crate) fn rx_stalled(&self) -> bool {
        self.rx_stalled.load(Relaxed)
    }

    /// The flags /proc/net/kcm shows: stopped (unattached or broken), transmit broken,
    /// reserved by a sender, holding a message no member could take.
    pub(crate) fn status(&self) -> PsockStatus {
        let (rx_stopped, ready) = {
            let rx = self.stream.lock();
            (rx.stopped, !rx.assembled.is_empty())
        };
        let tx = self.tx.lock();
        PsockStatus {
            rx_stopped,
            ready,
            tx_broken: tx.broken,
            reserved: tx.busy,
        }
    }

    /// Takes the socket's callbacks; from now on arriving bytes are parsed, starting with those
    /// already queued (by the receive work). EALREADY when the socket has another owner.
    pub(crate) fn start(self: &Arc<Self>) -> Result {
        self.stream().take_callbacks(self.clone())?;
        Self::kick(self.clone());
        Ok(())
    }

    /// Queues the receive work.
    pub(crate) fn kick(this: Arc<Self>) {
        let _ = workqueue::queue().enqueue::<_, 0>(this);
    }

    /// Bytes arrived (the socket's callback). Under `softirq_lock` (a plain TCP socket that no
    /// task owns) they are read right here; otherwise the receive work reads them.
    pub(crate) fn data_ready(this: Arc<Self>, softirq_lock: Option<&SoftirqLocked>) {
        if let Some(rx) = softirq_lock.and_then(|lock| this.stream.lock_in_softirq(lock)) {
            this.receive_locked(rx);
            return;
        }
        Self::kick(this);
    }

    /// The TCP state changed (softirq): the work notices a closed or reset stream.
    pub(crate) fn state_changed(this: Arc<Self>) {
        Self::kick(this);
    }

    /// The receive work.
    fn receive(self: &Arc<Self>) {
        self.receive_locked(self.stream.lock());
    }

    /// Reads what arrived, under the socket's lock in either form.
    fn receive_locked(self: &Arc<Self>, mut rx: AttachedGuard<'_, PsockRx>) {
        if rx.stopped {
            return;
        }
        // Messages an earlier run could not hand over go first; while some are left, nothing
        // more is read.
        let mut run = RunReceiver::default();
        if !self.mux.deliver(&mut rx.assembled, self, &mut run) {
            return;
        }
        let ctx = rx.alloc_context();
        let budget = match ctx {
            AllocContext::Process => RX_BUDGET,
            AllocContext::Softirq => RX_BUDGET_SOFTIRQ,
        };
        let max_len = self.stream().rcvbuf();
        let mut taken = 0;
        let mut delivered_any = false;
        loop {
            let mut failure = None;
            let mut batch_full = false;
            let mut stalled = false;
            let mut starved = false;
            // The budget stopped the read with bytes left to read. A budget used up exactly by
            // the last bytes that arrived needs no more work.
            let mut budget_left_bytes = false;
            let read = rx.read(&mut |rx, chunk| {
                if failure.is_some() || stalled || starved {
                    return 0;
                }
                if taken >= budget {
                    budget_left_bytes = true;
                    return 0;
                }
                if rx.assembled.len() == RX_BATCH {
                    batch_full = true;
                    return 0;
                }
                match rx.framer.feed(chunk, &self.prog, max_len, ctx) {
                    Ok(fed) => {
                        taken += fed.used;
                        starved = fed.starved;
                        if let Some(msg) = fed.message {
                            self.stats.rx.count(msg.len());
                            // Cannot fail: room for RX_BATCH is reserved, and fewer are here.
                            let _ = rx.assembled.push_within_capacity(msg);
                            // The first message of a run goes at once: a reader may wait for
                            // just this one (request/response).
                            if !delivered_any {
                                delivered_any = true;
                                stalled = !self.mux.deliver(&mut rx.assembled, self, &mut run);
                            }
                        }
                        fed.used
                    }
                    Err(StreamError(e)) => {
                        failure = Some(e);
                        0
                    }
                }
            });
            // The messages before a failure go to readers too.
            let all_taken = !stalled && self.mux.deliver(&mut rx.assembled, self, &mut run);
            if let Some(e) = failure {
                // (A failing actor stops the read, so the read itself did not fail.)
                self.break_stream(&mut rx, Break::Parse(e));
                return;
            }
            let ended = match read {
                Ok(ended) => ended,
                Err(e) => {
                    // The transport failed (TLS: a record that does not decrypt, or is not
                    // data).
                    self.break_stream(&mut rx, Break::Transport(e));
                    return;
                }
            };
            if !all_taken {
                // The multiplexor queues the work again when room appears.
                self.note_assembly(&mut rx);
                return;
            }
            if budget_left_bytes || starved || (batch_full && ctx == AllocContext::Softirq) {
                // More may be queued, or it needs memory that softirq could not get: go on in
                // the work.
                self.note_assembly(&mut rx);
                Self::kick(self.clone());
                return;
            }
            if batch_full {
                continue;
            }
            if ended {
                // Everything that arrived before the close or reset has been parsed.
                self.break_stream(&mut rx, Break::PeerDone);
            } else {
                self.note_assembly(&mut rx);
            }
            return;
        }
    }

    /// Records when the incomplete message (if any) began, and arms the assembly timer.
    fn note_assembly(self: &Arc<Self>, rx: &mut PsockRx) {
        if !rx.framer.in_message() {
            rx.message_started = None;
            return;
        }
        let completed = self.stats.rx.msgs.get();
        if rx.message_started.is_none_or(|(_, seen)| seen != completed) {
            rx.message_started = Some((Instant::now(), completed));
        }
        self.arm_timer(rx);
    }

    /// SO_RCVTIMEO of the TCP socket in milliseconds, if set.
    fn assembly_limit_ms(&self) -> Option<i64> {
        let timeo = self.stream().rcvtimeo();
        if timeo <= 0 {
            return None;
        }
        jiffies_to_ms(timeo)
    }

    fn arm_timer(self: &Arc<Self>, rx: &mut PsockRx) {
        let (Some(limit), Some((start, _))) = (self.assembly_limit_ms(), rx.message_started) else {
            return;
        };
        if rx.timer_armed {
            return;
        }
        let left = (limit - start.elapsed().as_millis()).clamp(1, TIMER_STEP_MS);
        let delay = kernel::time::msecs_to_jiffies(left as u32);
        rx.timer_armed = workqueue::enqueue_delayed::<_, 1>(self.clone(), delay);
    }

    /// The assembly timer: ETIMEDOUT when the incomplete message is older than SO_RCVTIMEO.
    fn check_assembly_time(self: &Arc<Self>) {
        let mut rx = self.stream.lock();
        rx.timer_armed = false;
        if rx.stopped || !rx.framer.in_message() {
            return;
        }
        let (Some(limit), Some((start, _))) = (self.assembly_limit_ms(), rx.message_started) else {
            return;
        };
        if start.elapsed() >= Delta::from_millis(limit) {
            self.break_stream(&mut rx, Break::Timeout);
        } else {
            self.arm_timer(&mut rx);
        }
    }

    /// The stream is broken: report the error on the socket and stop using it. The
    /// application unattaches and closes it.
    fn break_stream(&self, rx: &mut PsockRx, why: Break) {
        self.stats.rx_aborts.inc();
        let err = match why {
            Break::Parse(e) => {
                if e == EMSGSIZE {
                    self.stats.rx_too_big.inc();
                } else if e == ENOMEM {
                    self.stats.rx_mem_fail.inc();
                } else {
                    self.stats.rx_bad_len.inc();
                }
                e
            }
            Break::Timeout => {
                self.stats.rx_timeouts.inc();
                ETIMEDOUT
            }
            Break::PeerDone => EPIPE,
            Break::Transport(e) => e,
        };
        rx.stopped = true;
        rx.framer = Framer::default();
        self.stream().report_error(err);
        self.tx.lock().broken = true;
        self.mux.psock_changed();
    }

    /// Unattach: give the socket its callbacks back and stop receiving. Bytes not parsed yet
    /// stay in the socket; a whole message already taken out of it goes to the multiplexor.
    pub(crate) fn stop(self: &Arc<Self>) {
        let mut rx = self.stream.lock();
        // The socket's reference on this psock comes back and goes.
        drop(self.stream().restore_callbacks());
        rx.release_ulp_slot();
        rx.stopped = true;
        rx.framer = Framer::default();
        self.mux.hold_all(&mut rx.assembled);
        drop(rx);
        self.tx.lock().broken = true;
    }

    /// Waits until no sender is writing a message on the stream, so that the application that
    /// unattached the socket finds it at a message boundary and no byte of ours follows its
    /// own. After [`Psock::stop`] no new message starts: [`Psock::send_message`] checks
    /// `broken` under the same lock. A signal ends the wait early.
    pub(crate) fn wait_tx_idle(&self) {
        let mut tx = self.tx.lock();
        while tx.writing {
            if self.tx_idle.wait_interruptible(&mut tx) {
                break;
            }
        }
    }

    /// Reserves the psock for one message, unless it is busy or broken.
    pub(crate) fn try_reserve(&self) -> bool {
        let mut tx = self.tx.lock();
        if tx.busy || tx.broken {
            return false;
        }
        tx.busy = true;
        self.stats.reserved.inc();
        true
    }

    /// Ends a reservation.
    pub(crate) fn release(&self) {
        self.tx.lock().busy = false;
        self.stats.unreserved.inc();
        self.mux.psock_released();
    }

    /// Writes `msg` whole; the psock is reserved by the caller.
    ///
    /// Before the first byte the sender waits for room for the whole message (or the whole
    /// send buffer, for a larger one): MSG_DONTWAIT (`nonblock`), SO_SNDTIMEO (`timeo`) and
    /// signals end that wait with nothing written. After the first byte the message is
    /// finished whatever happens, so no stream carries part of one, except when the sender is
    /// killed: the stream is then broken (EPIPE), as its framing is lost. On `Broken` the psock
    /// is out of service and the caller sends the message again from its start elsewhere.
    pub(crate) fn send_message(
        &self,
        msg: &[u8],
        limits: &SendLimits,
        timeo: &mut isize,
    ) -> core::result::Result<(), TxError> {
        {
            let mut tx = self.tx.lock();
            // Unattached (or failed) since the reservation: `wait_tx_idle` may have returned
            // already, so not a byte goes out here.
            if tx.broken {
                return Err(TxError::Broken);
            }
            tx.writing = true;
        }
        let result = self.write_message(msg, limits, timeo);
        self.tx.lock().writing = false;
        self.tx_idle.notify_all();
        result
    }

    fn write_message(
        &self,
        msg: &[u8],
        limits: &SendLimits,
        timeo: &mut isize,
    ) -> core::result::Result<(), TxError> {
        self.wait_for_room(msg.len(), limits, timeo)?;
        let mut sent = 0;
        while sent < msg.len() {
            match self.stream().send(&msg[sent..], true, false) {
                Ok(n) => sent += n,
                Err(e) if e == EAGAIN => {
                    if sent == 0 {
                        self.wait_for_room(msg.len(), limits, timeo)?;
                        continue;
                    }
                    let mut forever = isize::MAX;
                    match self.stream().wait_for_space(&mut forever) {
                        Ok(()) => {}
                        Err(e) if e == EPIPE => return Err(self.tx_failed()),
                        Err(_) if fatal_signal_pending() => {
                            self.stream().report_error(EPIPE);
                            return Err(self.tx_failed());
                        }
                        // Another signal: the message still goes out; do not spin on it.
                        Err(_) => kernel::time::delay::fsleep(Delta::from_millis(1)),
                    }
                }
                Err(_) => return Err(self.tx_failed()),
            }
        }
        self.stats.tx.count(msg.len());
        Ok(())
    }

    /// Room for `len` more bytes: the TCP socket can take them (at most its whole send
    /// buffer), and what it still has queued plus them stays within the KCM socket's SO_SNDBUF
    /// (an empty queue takes any message).
    fn has_room(&self, len: usize, limits: &SendLimits) -> bool {
        let (space, sndbuf) = self.stream().send_space();
        let queued = self.stream().send_queued();
        space >= len.min(sndbuf) && (queued == 0 || queued + len <= limits.sndbuf)
    }

    /// Waits until there is room for `len` bytes ([`Psock::has_room`]).
    fn wait_for_room(
        &self,
        len: usize,
        limits: &SendLimits,
        timeo: &mut isize,
    ) -> core::result::Result<(), TxError> {
        let nonblock = limits.nonblock;
        let start = Instant::<Monotonic>::now();
        let limit_ms = jiffies_to_ms(*timeo);
        loop {
            if self.has_room(len, limits) {
                return Ok(());
            }
            if nonblock || *timeo <= 0 {
                return Err(TxError::WouldBlock);
            }
            // Sleeps until some memory frees; room for the whole message may take longer.
            let mut wait = match limit_ms {
                Some(limit) => {
                    let left = limit - start.elapsed().as_millis();
                    if left <= 0 {
                        *timeo = 0;
                        return Err(TxError::Interrupted(EAGAIN));
                    }
                    kernel::time::msecs_to_jiffies(left.min(i64::from(u32::MAX)) as u32).max(1)
                        as isize
                }
                None => isize::MAX,
            };
            match self.stream().wait_for_space(&mut wait) {
                Ok(()) => {
                    // Some memory is free, but maybe not enough yet: do not spin.
                    if !self.has_room(len, limits) {
                        kernel::time::delay::fsleep(Delta::from_millis(1));
                    }
                }
                Err(e) if e == EAGAIN => {}
                Err(e) if e == EPIPE => return Err(self.tx_failed()),
                Err(e) => return Err(TxError::Interrupted(e)),
            }
        }
    }

    /// The stream failed under a send: out of service for sending.
    fn tx_failed(&self) -> TxError {
        self.stats.tx_aborts.inc();
        self.tx.lock().broken = true;
        self.mux.psock_changed();
        TxError::Broken
    }

    /// Corks the stream for a batch of messages (MSG_BATCH), or pushes it.
    pub(crate) fn set_cork(&self, on: bool) {
        self.stream().set_cork(on);
    }
}
