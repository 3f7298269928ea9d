// SPDX-License-Identifier: GPL-2.0

//! [`Mux`]: a multiplexor, shared by the KCM sockets of one `socket()` call and its clones.

use crate::net_state::NetState;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

/// One KCM socket as the multiplexor sees it.
struct Member {
    /// Index of the socket in the multiplexor, as shown in /proc/net/kcm: the lowest free one.
    index: u32,
    /// KCM_RECV_DISABLE: no message is steered to this socket.
    recv_disabled: bool,
}

/// The members of a multiplexor, sorted by index.
struct Members {
    list: KVec<Member>,
}

impl Members {
    fn find(&self, index: u32) -> Option<usize> {
        self.list.binary_search_by_key(&index, |m| m.index).ok()
    }
}

/// A multiplexor.
#[pin_data]
pub(crate) struct Mux {
    net: Arc<NetState>,
    #[pin]
    members: Mutex<Members>,
}

impl Mux {
    /// Creates a multiplexor in `net` and registers it there.
    pub(crate) fn new(net: Arc<NetState>) -> Result<Arc<Self>> {
        let mux_net = net.clone();
        let mux = Arc::pin_init(
            pin_init!(Self {
                net: mux_net,
                members <- kernel::new_mutex!(Members { list: KVec::new() }, "Mux::members"),
            }),
            GFP_KERNEL,
        )?;
        net.add_mux(mux.clone())?;
        Ok(mux)
    }

    /// Adds a socket; returns its index.
    pub(crate) fn join(&self) -> Result<u32> {
        let mut members = self.members.lock();
        // The lowest index not in use: the first gap in the sorted list.
        let pos = members
            .list
            .iter()
            .enumerate()
            .position(|(pos, m)| m.index as usize != pos)
            .unwrap_or(members.list.len());
        let index = u32::try_from(pos)?;
        members.list.reserve(1, GFP_KERNEL)?;
        let member = Member {
            index,
            recv_disabled: false,
        };
        // Cannot fail: `pos` is at most the length and room was reserved.
        members
            .list
            .insert_within_capacity(pos, member)
            .map_err(|_| EINVAL)?;
        Ok(index)
    }

    /// Removes the socket with `index`; the last one to leave unregisters the multiplexor.
    pub(crate) fn leave(&self, index: u32) {
        let now_empty = {
            let mut members = self.members.lock();
            if let Some(pos) = members.find(index) {
                members.list.remove(pos).ok();
            }
            members.list.is_empty()
        };
        // A multiplexor without members gains none: a new member needs a live one to clone.
        if now_empty {
            self.net.remove_mux(self);
        }
    }

    pub(crate) fn set_recv_disabled(&self, index: u32, disabled: bool) {
        let mut members = self.members.lock();
        if let Some(pos) = members.find(index) {
            members.list[pos].recv_disabled = disabled;
        }
    }

    pub(crate) fn recv_disabled(&self, index: u32) -> bool {
        let members = self.members.lock();
        members
            .find(index)
            .is_some_and(|pos| members.list[pos].recv_disabled)
    }
}
