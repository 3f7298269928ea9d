// SPDX-License-Identifier: GPL-2.0

//! [`Psock`]: a TCP, MPTCP or kernel TLS socket attached to a multiplexor.
//!
//! Receive: the socket's `data_ready` (with TLS: record-ready) and `state_change` callbacks
//! (softirq) only queue the psock's receive work. The work (process context, under the
//! psock's `rx` lock, then the socket's lock) reads what arrived through the [`Framer`]. The
//! first whole message of a run goes to the multiplexor at once (a reader may be waiting for
//! just that reply); the following ones, up to [`RX_BATCH`], together after the socket's lock
//! is released (one round trip of the multiplexor's lock and one wake-up per KCM socket for
//! the batch, and senders on the socket are not held up meanwhile). When no KCM socket can
//! take a message, the psock keeps it and stops reading, so TCP flow control pushes back on the
//! peer; the multiplexor queues the work again when room appears.
//!
//! Transmit: a sender reserves the psock (`PsockTx::busy`), writes one whole message and
//! releases it, so messages never interleave on the stream.

use crate::ffi::bpf::BpfProg;
use crate::ffi::stream::StreamSocket;
use crate::ffi::workqueue;
use crate::framer::{Framer, StreamError};
use crate::mux::Mux;
use crate::stats::PsockStats;
use kernel::prelude::*;
use kernel::sync::{Arc, CondVar, Mutex, UniqueArc};
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

/// Bytes one run of the receive work takes from the stream before it queues itself again,
/// so that senders waiting for the TCP socket's lock and other psocks' work get their turn.
const RX_BUDGET: usize = 64 * 1024;

/// Whole messages the receive work assembles before it hands them to the multiplexor.
const RX_BATCH: usize = 32;

/// Receive state.
struct PsockRx {
    framer: Framer,
    /// Whole messages not handed to the multiplexor yet, oldest first: those of the running
    /// receive work, or those no KCM socket could take yet. Room for [`RX_BATCH`] is reserved.
    assembled: KVec<crate::ffi::skb::Skb>,
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
    assembled: KVec<crate::ffi::skb::Skb>,
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
    stream: StreamSocket,
    prog: BpfProg,
    mux: Arc<Mux>,
    /// Index in the multiplexor, as shown in /proc/net/kcm.
    index: u32,
    stats: PsockStats,
    #[pin]
    rx: Mutex<PsockRx>,
    #[pin]
    rx_work: Work<Psock>,
    /// Checks that a message is assembled within the TCP socket's SO_RCVTIMEO.
    #[pin]
    timeout_work: DelayedWork<Psock, 1>,
    #[pin]
    tx: Mutex<PsockTx>,
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
        let built = memory.psock.write_pin_init(pin_init!(Self {
                stream,
                prog,
                mux,
                index,
                stats: PsockStats::default(),
                rx <- kernel::new_mutex!(
                    PsockRx {
                        framer: Framer::default(),
                        assembled,
                        stopped: false,
                        message_started: None,
                        timer_armed: false,
                    },
                    "Psock::rx"
                ),
                rx_work <- kernel::new_work!("Psock::rx_work"),
                timeout_work <- kernel::new_delayed_work!("Psock::timeout_work"),
                tx <- kernel::new_mutex!(
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
        &self.stream
    }

    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    pub(crate) fn stats(&self) -> &PsockStats {
        &self.stats
    }

    /// The flags /proc/net/kcm shows: stopped (unattached or broken), transmit broken,
    /// reserved by a sender, holding a message no member could take.
    pub(crate) fn status(&self) -> PsockStatus {
        let (rx_stopped, ready) = {
            let rx = self.rx.lock();
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
    /// already queued. EALREADY when the socket has another owner.
    pub(crate) fn start(self: &Arc<Self>) -> Result {
        self.stream.take_callbacks(self.clone())?;
        Self::data_ready(self.clone());
        Ok(())
    }

    /// Bytes arrived (softirq): run the receive work.
    pub(crate) fn data_ready(this: Arc<Self>) {
        let _ = workqueue::queue().enqueue::<_, 0>(this);
    }

    /// The TCP state changed (softirq): the work notices a closed or reset stream.
    pub(crate) fn state_changed(this: Arc<Self>) {
        Self::data_ready(this);
    }

    /// The receive work.
    fn receive(self: &Arc<Self>) {
        let mut rx = self.rx.lock();
        if rx.stopped {
            return;
        }
        // Messages an earlier run could not hand over go first; while some are left, nothing
        // more is read.
        if !self.mux.deliver(&mut rx.assembled, self) {
            return;
        }
        let max_len = self.stream.rcvbuf();
        let mut taken = 0;
        let mut delivered_any = false;
        loop {
            let mut failure = None;
            let mut batch_full = false;
            let mut stalled = false;
            let read = self.stream.read(&mut |chunk| {
                if failure.is_some() || stalled || taken >= RX_BUDGET {
                    return 0;
                }
                if rx.assembled.len() == RX_BATCH {
                    batch_full = true;
                    return 0;
                }
                match rx.framer.feed(chunk, 0, &self.prog, max_len) {
                    Ok(fed) => {
                        taken += fed.used;
                        if let Some(msg) = fed.message {
                            self.stats.rx.count(msg.len());
                            // Cannot fail: room for RX_BATCH is reserved, and fewer are here.
                            let _ = rx.assembled.push_within_capacity(msg);
                            // The first message of a run goes at once: a reader may wait for
                            // just this one (request/response).
                            if !delivered_any {
                                delivered_any = true;
                                stalled = !self.mux.deliver(&mut rx.assembled, self);
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
            let all_taken = !stalled && self.mux.deliver(&mut rx.assembled, self);
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
            if taken >= RX_BUDGET {
                // More may be queued: go on in a later run of the work.
                self.note_assembly(&mut rx);
                Self::data_ready(self.clone());
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
        let timeo = self.stream.rcvtimeo();
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
        let mut rx = self.rx.lock();
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
        self.stream.report_error(err);
        self.tx.lock().broken = true;
        self.mux.psock_changed();
    }

    /// Unattach: give the socket its callbacks back and stop receiving. Bytes not parsed yet
    /// stay in the socket; a whole message already taken out of it goes to the multiplexor.
    pub(crate) fn stop(self: &Arc<Self>) {
        let mut rx = self.rx.lock();
        {
            let guard = self.stream.lock();
            // The socket's reference on this psock comes back and goes.
            drop(self.stream.restore_callbacks());
            self.stream.release_ulp_slot(&guard);
        }
        rx.stopped = true;
        rx.framer = Framer::default();
        for msg in rx.assembled.drain_all() {
            self.mux.hold(msg);
        }
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
            match self.stream.send(&msg[sent..], true, false) {
                Ok(n) => sent += n,
                Err(e) if e == EAGAIN => {
                    if sent == 0 {
                        self.wait_for_room(msg.len(), limits, timeo)?;
                        continue;
                    }
                    let mut forever = isize::MAX;
                    match self.stream.wait_for_space(&mut forever) {
                        Ok(()) => {}
                        Err(e) if e == EPIPE => return Err(self.tx_failed()),
                        Err(_) if fatal_signal_pending() => {
                            self.stream.report_error(EPIPE);
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
        let (space, sndbuf) = self.stream.send_space();
        let queued = self.stream.send_queued();
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
            match self.stream.wait_for_space(&mut wait) {
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
        self.stream.set_cork(on);
    }
}
