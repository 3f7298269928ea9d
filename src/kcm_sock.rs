// SPDX-License-Identifier: GPL-2.0

//! [`KcmSock`]: the state of one KCM socket, and the socket calls that act on it.

use crate::ffi::bindings as b;
use crate::ffi::bpf::BpfProg;
use crate::ffi::errno::enoprotoopt;
use crate::ffi::kcm_sk::{KcmSk, KcmSkGuard, QueuedMessage, SplicePipe};
use crate::ffi::msg::{RecvMsg, SendMsg};
use crate::ffi::stream::{StreamSocket, Unattachable};
use crate::mux::Mux;
use crate::net_state::NetState;
use crate::psock::{Psock, SendLimits, TxError};
use crate::stats::SockStats;
use crate::timeo::wait_within;
use kernel::prelude::*;
use kernel::sync::{Arc, CondVar, Mutex};

/// Options of level SOL_KCM.
#[derive(Clone, Copy)]
pub(crate) enum SockOption {
    /// KCM_RECV_DISABLE: 1 takes the socket out of receive steering, 0 puts it back.
    RecvDisable,
}

impl SockOption {
    /// Maps an option name; unknown names are ENOPROTOOPT, as in net/kcm.
    pub(crate) fn from_raw(optname: i32) -> Result<Self> {
        match optname {
            1 => Ok(Self::RecvDisable),
            _ => Err(enoprotoopt()),
        }
    }
}

/// The socket of `fd` for attach and unattach: ENOENT when it is none, EINVAL when it has no
/// sock (as net/kcm).
fn lookup_stream(fd: i32) -> Result<StreamSocket> {
    StreamSocket::lookup(fd).map_err(|why| match why {
        Unattachable::NotASocket => ENOENT,
        Unattachable::NoSock => EINVAL,
    })
}

/// The message a socket is building from sends.
struct KcmTx {
    /// Bytes of the message so far (SOCK_SEQPACKET until MSG_EOR, SOCK_DGRAM with MSG_MORE).
    pending: KVVec<u8>,
    /// The psock reserved by a batch of messages (MSG_BATCH), corked until the batch ends.
    batch: Option<Arc<Psock>>,
    /// A sender is sending the message; `pending` and `batch` are its own until it is done.
    sending: bool,
}

/// How a receive call wants its message.
pub(crate) struct RecvFlags {
    pub(crate) nonblock: bool,
    pub(crate) peek: bool,
}

/// One KCM socket: a member of a multiplexor.
#[pin_data(PinnedDrop)]
pub(crate) struct KcmSock {
    mux: Arc<Mux>,
    index: u32,
    sk: KcmSk,
    seqpacket: bool,
    stats: Arc<SockStats>,
    /// Serialises the senders of this socket: one message is built at a time.
    #[pin]
    tx: Mutex<KcmTx>,
    /// Signalled when a sender is done sending (`KcmTx::sending` cleared).
    #[pin]
    tx_turn: CondVar,
}

impl KcmSock {
    /// The first socket of a new multiplexor in `net` (`socket(AF_KCM, ...)`).
    pub(crate) fn new_multiplexor(
        net: Arc<NetState>,
        sk: KcmSk,
        seqpacket: bool,
    ) -> Result<Arc<Self>> {
        let mux = Mux::new(net)?;
        // A multiplexor whose first socket could not join has no member to end it.
        Self::join(mux.clone(), sk, seqpacket).inspect_err(|_| mux.abandon_if_empty())
    }

    /// Another socket on this socket's multiplexor (SIOCKCMCLONE).
    pub(crate) fn new_member(&self, sk: KcmSk) -> Result<Arc<Self>> {
        Self::join(self.mux.clone(), sk, self.seqpacket)
    }

    fn join(mux: Arc<Mux>, sk: KcmSk, seqpacket: bool) -> Result<Arc<Self>> {
        let stats = Arc::new(SockStats::default(), GFP_KERNEL)?;
        let index = mux.join(sk, stats.clone())?;
        let member_of = mux.clone();
        // If the allocation fails, the partly built value is dropped, and a `Mux` member is
        // left behind: undo it here.
        Arc::pin_init(
            pin_init!(Self {
                mux: member_of,
                index,
                sk,
                seqpacket,
                stats,
                tx <- kernel::new_mutex!(
                    KcmTx {
                        pending: KVVec::new(),
                        batch: None,
                        sending: false,
                    },
                    "KcmSock::tx"
                ),
                tx_turn <- kernel::new_condvar!("KcmSock::tx_turn"),
            }),
            GFP_KERNEL,
        )
        .inspect_err(|_| mux.leave(index))
    }

    /// SIOCKCMATTACH: errnos as net/kcm.
    pub(crate) fn attach(&self, fd: i32, bpf_fd: i32) -> Result {
        let mut stream = lookup_stream(fd)?;
        let prog = BpfProg::get_socket_filter(bpf_fd)?;
        // TCP, MPTCP or TCP with kernel TLS, connected or connecting. Unlike net/kcm, which
        // takes any ULP and parses its bytes, a TCP socket with no ULP is kept from getting one
        // while it is attached.
        stream.claim()?;
        // Gives the slot back if the attach fails.
        self.mux.attach(stream, prog)
    }

    /// SIOCKCMUNATTACH: ENOENT unless `fd` is a socket attached to this multiplexor.
    pub(crate) fn unattach(&self, fd: i32) -> Result {
        let stream = lookup_stream(fd)?;
        self.mux.unattach(&stream)
    }

    pub(crate) fn set_option(&self, option: SockOption, value: i32) -> Result {
        match option {
            SockOption::RecvDisable => {
                // No read of this socket is under way while its queue moves elsewhere.
                let _guard = self.sk.lock();
                self.mux.set_recv_disabled(self.index, value != 0)
            }
        }
    }

    pub(crate) fn option(&self, option: SockOption) -> i32 {
        match option {
            SockOption::RecvDisable => self.mux.recv_disabled(self.index).into(),
        }
    }

    /// Runs `f` on the message at the head of the queue, under the socket lock (one reader at
    /// a time), once there is one: waits up to SO_RCVTIMEO, or EAGAIN at once for `nonblock`.
    fn with_message<R>(
        &self,
        nonblock: bool,
        f: impl FnOnce(&KcmSkGuard, QueuedMessage<'_>) -> Result<R>,
    ) -> Result<R> {
        let mut timeo = self.sk.rcvtimeo(nonblock);
        loop {
            let guard = self.sk.lock();
            if let Some(msg) = self.sk.peek(&guard) {
                return f(&guard, msg);
            }
            drop(guard);
            if timeo == 0 {
                return Err(EAGAIN);
            }
            self.sk.wait_for_message(&mut timeo)?;
        }
    }

    /// recvmsg: one message (SOCK_DGRAM: truncated to `len`, the rest dropped, MSG_TRUNC), or
    /// for SOCK_SEQPACKET the next `len` bytes of it, MSG_EOR with its last byte.
    pub(crate) fn recv(&self, out: &mut RecvMsg, len: usize, flags: RecvFlags) -> Result<usize> {
        let (n, consumed) = self.with_message(flags.nonblock, |guard, mut msg| {
            let offset = msg.read_offset();
            let remaining = msg.len() - offset;
            let n = len.min(remaining);
            out.copy_from(&msg, offset, n)?;
            if flags.peek {
                return Ok((n, false));
            }
            if n < remaining && self.seqpacket {
                msg.set_read_offset(offset + n);
                return Ok((n, false));
            }
            out.set_end_of_message(n < remaining);
            self.stats.rx.count(msg.len());
            self.sk.consume_head(guard);
            Ok((n, true))
        })?;
        if consumed {
            // Outside the socket lock (lock order): the buffer has room again.
            self.mux.message_consumed();
        }
        Ok(n)
    }

    /// splice() of a SOCK_SEQPACKET socket: the next bytes of the head message, as net/kcm.
    /// Message ends are not visible to splice: a message spliced to its end stays queued, and
    /// the next recvmsg returns 0 bytes with MSG_EOR for it.
    pub(crate) fn splice(&self, pipe: &SplicePipe, len: usize, nonblock: bool) -> Result<usize> {
        self.with_message(nonblock, |_guard, mut msg| {
            let offset = msg.read_offset();
            let n = len.min(msg.len() - offset);
            let spliced = self.sk.splice(&msg, offset, pipe, n)?;
            msg.set_read_offset(offset + spliced);
            Ok(spliced)
        })
    }

    /// sendmsg: adds the data to the message being built; a send that ends it (SOCK_DGRAM
    /// without MSG_MORE, SOCK_SEQPACKET with MSG_EOR) sends the whole message on one psock.
    /// A failed send leaves the message as it was before the call.
    pub(crate) fn send(
        &self,
        input: &mut SendMsg,
        nonblock: bool,
        sndtimeo: isize,
    ) -> Result<usize> {
        let flags = input.flags();
        let ends_message = if self.seqpacket {
            flags & b::MSG_EOR != 0
        } else {
            flags & b::MSG_MORE == 0
        };
        let batch = flags & b::MSG_BATCH != 0;
        let n = input.len();
        let mut timeo = sndtimeo;
        let mut tx = self.tx.lock();
        // Another sender's message is going out, which may take as long as the stream does
        // not drain: wait for it interruptibly, within SO_SNDTIMEO, not on the mutex.
        while tx.sending {
            wait_within(&self.tx_turn, &mut tx, nonblock, &mut timeo)?;
        }
        let before = tx.pending.len();
        input.append_to(&mut tx.pending, n)?;
        if !ends_message {
            return Ok(n);
        }
        let limits = SendLimits {
            nonblock,
            sndbuf: self.sk.sndbuf(),
        };
        // The message goes out without the mutex held; the next sender waits for the turn.
        tx.sending = true;
        let mut work = KcmTx {
            pending: core::mem::take(&mut tx.pending),
            batch: tx.batch.take(),
            sending: true,
        };
        drop(tx);
        let result = if batch || work.batch.is_some() {
            self.send_batched(&mut work, batch, &limits, &mut timeo)
        } else {
            self.mux.transmit(&work.pending, &limits, &mut timeo)
        };
        let ret = match result {
            Ok(()) => {
                self.stats.tx.count(work.pending.len());
                work.pending.clear();
                Ok(n)
            }
            Err(e) => {
                work.pending.truncate(before);
                Err(e)
            }
        };
        let mut tx = self.tx.lock();
        tx.pending = work.pending;
        tx.batch = work.batch;
        tx.sending = false;
        drop(tx);
        self.tx_turn.notify_all();
        ret
    }

    /// Sends the pending message on the batch's psock; `more` keeps the batch open.
    fn send_batched(
        &self,
        tx: &mut KcmTx,
        more: bool,
        limits: &SendLimits,
        timeo: &mut isize,
    ) -> Result {
        let psock = match tx.batch.take() {
            Some(psock) => psock,
            None => self.mux.begin_batch(limits.nonblock, timeo)?,
        };
        match psock.send_message(&tx.pending, limits, timeo) {
            Ok(()) => {
                self.mux.stats().tx.count(tx.pending.len());
                if more {
                    tx.batch = Some(psock);
                } else {
                    self.mux.end_batch(psock);
                }
                Ok(())
            }
            Err(TxError::WouldBlock) => {
                tx.batch = Some(psock);
                Err(EAGAIN)
            }
            Err(TxError::Interrupted(e)) => {
                tx.batch = Some(psock);
                Err(e)
            }
            Err(TxError::Broken) => {
                self.mux.end_batch(psock);
                self.mux.transmit(&tx.pending, limits, timeo)
            }
        }
    }
}

#[pinned_drop]
impl PinnedDrop for KcmSock {
    fn drop(self: Pin<&mut Self>) {
        if let Some(psock) = self.tx.lock().batch.take() {
            self.mux.end_batch(psock);
        }
        self.mux.leave(self.index);
    }
}
