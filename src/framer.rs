// SPDX-License-Identifier: GPL-2.0

//! [`Framer`]: cuts the byte stream of a psock into messages with its BPF parser.
//!
//! The parser always runs over a buffer whose first byte is the first byte of the message, so
//! it sees the same bytes however TCP segments the stream: several messages in a segment, a
//! message starting mid-segment, a header split across segments. (net/kcm runs it at the start
//! of the segment instead, and mis-frames back-to-back messages.)
//!
//! While the length is unknown, the framer copies a small prefix (`PEEK` bytes, doubled while
//! the parser asks for more) rather than whole segments, so many small messages in one large
//! segment cost no more copying than their own bytes.
//!
//! A message of at least [`SHARE_MIN`] bytes is not copied at all: one that lies whole in one
//! received buffer becomes a clone of that buffer that shares its data, and one that spans
//! several becomes a chain of clones of them; the reader's copy to user space is the only one.
//! (A buffer that does not line up with the chain, one partly read before, turns the message
//! into a copy from there on.) The buffer that held a message's first bytes is kept for the
//! next message.

use crate::ffi::bpf::BpfProg;
use crate::ffi::errno::eproto;
use crate::ffi::skb::{AllocContext, Skb, SkbChunk};
use kernel::prelude::*;

/// Bytes the parser first sees of a message.
const PEEK: usize = 64;

/// The smallest message that shares a received buffer's data instead of being copied: below
/// it, copying costs less than a clone, and a clone would keep a large buffer alive for a few
/// bytes.
const SHARE_MIN: usize = 1024;

/// The most received buffers a message shares the data of. A message that arrives in more
/// (small segments) is copied from then on: each shared buffer costs an `sk_buff` of its own,
/// which for a few bytes would cost far more memory than the bytes.
const CHAIN_MAX: usize = 16;

/// Why the stream cannot be parsed any further.
pub(crate) struct StreamError(pub(crate) Error);

/// The message being assembled.
struct Partial {
    msg: Skb,
    /// The message's length, once the parser gave it.
    len: Option<usize>,
    /// How many received buffers `msg` chains (it shares their data); 0: `msg` is a copy.
    chain_members: usize,
}

/// Assembly state of one psock.
#[derive(Default)]
pub(crate) struct Framer {
    partial: Option<Partial>,
    /// A buffer for the first bytes of the next message: one that held a message's first bytes
    /// and was not needed for the message itself.
    spare: Option<Skb>,
}

/// What [`Framer::feed`] did with a chunk.
pub(crate) struct Fed {
    /// Bytes of the chunk used; the rest starts the next message.
    pub(crate) used: usize,
    /// A complete message, if one ended in the chunk.
    pub(crate) message: Option<Skb>,
    /// In softirq, a buffer could not be allocated: the framer stopped (its state is whole) and
    /// the rest goes to a read in process context, which may sleep for memory.
    pub(crate) starved: bool,
}

impl Fed {
    fn used(used: usize) -> Self {
        Self {
            used,
            message: None,
            starved: false,
        }
    }
}

/// Why parsing stopped inside a chunk.
enum Stop {
    /// No buffer in softirq, after `used` bytes of the chunk were taken.
    Starved { used: usize },
    /// The stream cannot be parsed any further.
    Broken(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Broken(e)
    }
}

/// A new buffer for `capacity` bytes. In softirq a failure is a [`Stop::Starved`] after `used`
/// bytes; in process context it is final (ENOMEM).
fn alloc_or_stop(
    capacity: usize,
    ctx: AllocContext,
    used: usize,
) -> core::result::Result<Skb, Stop> {
    Skb::alloc(capacity, ctx).map_err(|e| starved_or_broken(e, ctx, used))
}

fn starved_or_broken(e: Error, ctx: AllocContext, used: usize) -> Stop {
    if e == ENOMEM && ctx == AllocContext::Softirq {
        Stop::Starved { used }
    } else {
        Stop::Broken(e)
    }
}

impl Framer {
    /// A message has begun and is not complete.
    pub(crate) fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Feeds bytes of the stream. Uses the chunk up to the end of the first message that ends
    /// in it. `max_len` is the largest message accepted (EMSGSIZE above it). Buffers are
    /// allocated as `ctx` allows.
    pub(crate) fn feed(
        &mut self,
        chunk: &SkbChunk<'_>,
        prog: &BpfProg,
        max_len: usize,
        ctx: AllocContext,
    ) -> core::result::Result<Fed, StreamError> {
        let mut partial = match self.partial.take() {
            Some(partial) => partial,
            None => {
                let msg = match self.spare.take() {
                    Some(mut spare) => {
                        spare.trim(0);
                        spare
                    }
                    None => match alloc_or_stop(PEEK.min(chunk.len().max(1)), ctx, 0) {
                        Ok(msg) => msg,
                        Err(Stop::Starved { .. }) => {
                            return Ok(Fed {
                                starved: true,
                                ..Fed::used(0)
                            })
                        }
                        Err(Stop::Broken(e)) => return Err(StreamError(e)),
                    },
                };
                Partial {
                    msg,
                    len: None,
                    chain_members: 0,
                }
            }
        };
        let result = match partial.len {
            Some(len) => Self::fill(&mut partial, chunk, len, ctx),
            None => Self::parse(&mut partial, chunk, prog, max_len, &mut self.spare, ctx),
        };
        match result {
            Ok(used) if partial.len == Some(partial.msg.len()) => Ok(Fed {
                message: Some(partial.msg),
                ..Fed::used(used)
            }),
            Ok(used) => {
                self.partial = Some(partial);
                Ok(Fed::used(used))
            }
            Err(Stop::Starved { used }) => {
                if partial.msg.len() == 0 {
                    self.spare = Some(partial.msg);
                } else {
                    self.partial = Some(partial);
                }
                Ok(Fed {
                    starved: true,
                    ..Fed::used(used)
                })
            }
            Err(Stop::Broken(e)) => Err(StreamError(e)),
        }
    }

    /// Takes the body of a message of known length: shares it onto a chain, or copies it.
    fn fill(
        partial: &mut Partial,
        chunk: &SkbChunk<'_>,
        len: usize,
        ctx: AllocContext,
    ) -> core::result::Result<usize, Stop> {
        let take = chunk.len().min(len - partial.msg.len());
        if partial.chain_members > 0 {
            if partial.chain_members < CHAIN_MAX && chunk.can_extend_chain(take) {
                partial
                    .msg
                    .extend_chain(chunk, take, ctx)
                    .map_err(|e| starved_or_broken(e, ctx, 0))?;
                partial.chain_members += 1;
                return Ok(take);
            }
            // Too many buffers, or one that does not line up (part of it was read before):
            // copy what the chain holds and go on copying.
            let mut whole = alloc_or_stop(len, ctx, 0)?;
            whole.append_skb(&partial.msg)?;
            partial.msg = whole;
            partial.chain_members = 0;
        }
        partial.msg.append_chunk(chunk, 0, take)?;
        Ok(take)
    }

    /// Copies a growing prefix and runs the parser until it gives a length or the chunk ends.
    /// A prefix buffer the message does not need any more goes to `spare`. The length is
    /// recorded only once the message has its buffer, so that after a [`Stop::Starved`] the
    /// next chunk goes on parsing.
    fn parse(
        partial: &mut Partial,
        chunk: &SkbChunk<'_>,
        prog: &BpfProg,
        max_len: usize,
        spare: &mut Option<Skb>,
        ctx: AllocContext,
    ) -> core::result::Result<usize, Stop> {
        // Bytes of earlier chunks: already consumed from the stream.
        let before = partial.msg.len();
        let mut used = 0;
        loop {
            let have = partial.msg.len();
            let want = if have < PEEK { PEEK - have } else { have };
            let take = (chunk.len() - used).min(want);
            if take == 0 {
                return Ok(used);
            }
            if partial.msg.tailroom() < take {
                let mut bigger = alloc_or_stop(have + take.max(have), ctx, used)?;
                bigger.append_skb(&partial.msg)?;
                partial.msg = bigger;
            }
            partial.msg.append_chunk(chunk, used, take)?;
            used += take;
            let have = partial.msg.len();

            let verdict = prog.run(&partial.msg);
            if verdict < 0 {
                // The parser's own errno (e.g. EBADMSG); a value that is no errno is a length
                // near 2^31, which no receive buffer holds.
                let errno = verdict
                    .checked_neg()
                    .filter(|e| *e < 4096)
                    .unwrap_or(-EMSGSIZE.to_errno());
                return Err(Stop::Broken(Error::from_errno(-errno)));
            }
            if verdict == 0 {
                if have > max_len {
                    return Err(Stop::Broken(EMSGSIZE));
                }
                continue;
            }
            let len = verdict as usize;
            if len > max_len {
                return Err(Stop::Broken(EMSGSIZE));
            }
            if len <= before {
                // The message would end inside bytes already taken from the stream.
                return Err(Stop::Broken(eproto()));
            }
            if len <= have {
                // The message ends inside what was copied: the rest is the next message's.
                partial.msg.trim(len);
                partial.len = Some(len);
                return Ok(used - (have - len));
            }
            if before == 0 && len >= SHARE_MIN && len <= chunk.len() {
                // The whole message is in this buffer: share its data.
                let shared = chunk
                    .clone_window(0, len, ctx)
                    .map_err(|e| starved_or_broken(e, ctx, used))?;
                *spare = Some(core::mem::replace(&mut partial.msg, shared));
                partial.len = Some(len);
                return Ok(len);
            }
            if before == 0 && len >= SHARE_MIN && chunk.can_start_chain() {
                // The message goes on past this buffer: share the data of each buffer it spans.
                let chain = chunk
                    .start_chain(ctx)
                    .map_err(|e| starved_or_broken(e, ctx, used))?;
                *spare = Some(core::mem::replace(&mut partial.msg, chain));
                partial.len = Some(len);
                partial.chain_members = 1;
                return Ok(chunk.len());
            }
            if partial.msg.tailroom() < len - have {
                let mut whole = alloc_or_stop(len, ctx, used)?;
                whole.append_skb(&partial.msg)?;
                *spare = Some(core::mem::replace(&mut partial.msg, whole));
            }
            partial.len = Some(len);
            return Ok(used);
        }
    }
}
