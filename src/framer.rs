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
//! A message of at least [`SHARE_MIN`] bytes that lies whole in one received buffer is not
//! copied at all: it becomes a clone of that buffer that shares its data, and the reader's copy
//! to user space is the only one. The buffer that held its first bytes is kept for the next
//! message.

use crate::ffi::bpf::BpfProg;
use crate::ffi::errno::eproto;
use crate::ffi::skb::{Skb, SkbChunk};
use kernel::prelude::*;

/// Bytes the parser first sees of a message.
const PEEK: usize = 64;

/// The smallest message that shares a received buffer's data instead of being copied: below
/// it, copying costs less than a clone, and a clone would keep a large buffer alive for a few
/// bytes.
const SHARE_MIN: usize = 1024;

/// Why the stream cannot be parsed any further.
pub(crate) struct StreamError(pub(crate) Error);

/// The message being assembled.
struct Partial {
    msg: Skb,
    /// The message's length, once the parser gave it.
    len: Option<usize>,
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
}

impl Framer {
    /// A message has begun and is not complete.
    pub(crate) fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Feeds bytes of the stream. Uses the chunk up to the end of the first message that ends
    /// in it. `max_len` is the largest message accepted (EMSGSIZE above it).
    pub(crate) fn feed(
        &mut self,
        chunk: &SkbChunk<'_>,
        from: usize,
        prog: &BpfProg,
        max_len: usize,
    ) -> core::result::Result<Fed, StreamError> {
        let avail = chunk.len() - from;
        let mut partial = match self.partial.take() {
            Some(partial) => partial,
            None => Partial {
                msg: match self.spare.take() {
                    Some(mut spare) => {
                        spare.trim(0);
                        spare
                    }
                    None => Skb::alloc(PEEK.min(avail.max(1))).map_err(StreamError)?,
                },
                len: None,
            },
        };
        let result = match partial.len {
            Some(len) => Self::fill(&mut partial, chunk, from, len),
            None => Self::parse(&mut partial, chunk, from, prog, max_len, &mut self.spare),
        };
        match result {
            Ok(used) if partial.len == Some(partial.msg.len()) => Ok(Fed {
                used,
                message: Some(partial.msg),
            }),
            Ok(used) => {
                self.partial = Some(partial);
                Ok(Fed {
                    used,
                    message: None,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Copies the body of a message of known length.
    fn fill(
        partial: &mut Partial,
        chunk: &SkbChunk<'_>,
        from: usize,
        len: usize,
    ) -> core::result::Result<usize, StreamError> {
        let take = (chunk.len() - from).min(len - partial.msg.len());
        partial
            .msg
            .append_chunk(chunk, from, take)
            .map_err(StreamError)?;
        Ok(take)
    }

    /// Copies a growing prefix and runs the parser until it gives a length or the chunk ends.
    /// A prefix buffer the message does not need any more goes to `spare`.
    fn parse(
        partial: &mut Partial,
        chunk: &SkbChunk<'_>,
        from: usize,
        prog: &BpfProg,
        max_len: usize,
        spare: &mut Option<Skb>,
    ) -> core::result::Result<usize, StreamError> {
        // Bytes of earlier chunks: already consumed from the stream.
        let before = partial.msg.len();
        let mut used = 0;
        loop {
            let have = partial.msg.len();
            let want = if have < PEEK { PEEK - have } else { have };
            let take = (chunk.len() - from - used).min(want);
            if take == 0 {
                return Ok(used);
            }
            if partial.msg.tailroom() < take {
                let mut bigger = Skb::alloc(have + take.max(have)).map_err(StreamError)?;
                bigger.append_skb(&partial.msg).map_err(StreamError)?;
                partial.msg = bigger;
            }
            partial
                .msg
                .append_chunk(chunk, from + used, take)
                .map_err(StreamError)?;
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
                return Err(StreamError(Error::from_errno(-errno)));
            }
            if verdict == 0 {
                if have > max_len {
                    return Err(StreamError(EMSGSIZE));
                }
                continue;
            }
            let len = verdict as usize;
            if len > max_len {
                return Err(StreamError(EMSGSIZE));
            }
            if len <= before {
                // The message would end inside bytes already taken from the stream.
                return Err(StreamError(eproto()));
            }
            if len <= have {
                // The message ends inside what was copied: the rest is the next message's.
                partial.msg.trim(len);
                partial.len = Some(len);
                return Ok(used - (have - len));
            }
            partial.len = Some(len);
            if before == 0 && len >= SHARE_MIN && from + len <= chunk.len() {
                // The whole message is in this buffer: share its data.
                let shared = chunk.clone_window(from, len).map_err(StreamError)?;
                *spare = Some(core::mem::replace(&mut partial.msg, shared));
                return Ok(len);
            }
            if partial.msg.tailroom() < len - have {
                let mut whole = Skb::alloc(len).map_err(StreamError)?;
                whole.append_skb(&partial.msg).map_err(StreamError)?;
                *spare = Some(core::mem::replace(&mut partial.msg, whole));
            }
            return Ok(used);
        }
    }
}
