// SPDX-License-Identifier: GPL-2.0

//! [`KcmSock`]: the state of one KCM socket, and the socket calls that act on it.

use crate::ffi::errno::{enoprotoopt, eopnotsupp};
use crate::mux::Mux;
use crate::net_state::NetState;
use kernel::prelude::*;
use kernel::sync::Arc;

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

/// One KCM socket: a member of a multiplexor.
pub(crate) struct KcmSock {
    mux: Arc<Mux>,
    index: u32,
}

impl KcmSock {
    /// The first socket of a new multiplexor in `net` (`socket(AF_KCM, ...)`).
    pub(crate) fn new_multiplexor(net: Arc<NetState>) -> Result<KBox<Self>> {
        Self::join(Mux::new(net)?)
    }

    /// Another socket on this socket's multiplexor (SIOCKCMCLONE).
    pub(crate) fn new_member(&self) -> Result<KBox<Self>> {
        Self::join(self.mux.clone())
    }

    fn join(mux: Arc<Mux>) -> Result<KBox<Self>> {
        let index = mux.join()?;
        // If the allocation fails, the value is dropped and so leaves the multiplexor again.
        Ok(KBox::new(Self { mux, index }, GFP_KERNEL)?)
    }

    /// The socket is closed.
    pub(crate) fn release(self: KBox<Self>) {
        drop(self);
    }

    /// SIOCKCMATTACH.
    pub(crate) fn attach(&self, _fd: i32, _bpf_fd: i32) -> Result {
        // Attaching TCP sockets arrives with the data path.
        Err(eopnotsupp())
    }

    /// SIOCKCMUNATTACH: ENOENT unless `fd` is a socket attached to this multiplexor.
    pub(crate) fn unattach(&self, _fd: i32) -> Result {
        // Nothing can be attached before the data path lands.
        Err(ENOENT)
    }

    pub(crate) fn set_option(&self, option: SockOption, value: i32) -> Result {
        match option {
            SockOption::RecvDisable => self.mux.set_recv_disabled(self.index, value != 0),
        }
        Ok(())
    }

    pub(crate) fn option(&self, option: SockOption) -> i32 {
        match option {
            SockOption::RecvDisable => self.mux.recv_disabled(self.index).into(),
        }
    }
}

impl Drop for KcmSock {
    fn drop(&mut self) {
        self.mux.leave(self.index);
    }
}
