// SPDX-License-Identifier: GPL-2.0

//! The PF_KCM socket family: `struct proto`, the `proto_ops` vtables of SOCK_DGRAM and
//! SOCK_SEQPACKET sockets, and the `net_proto_family` whose `create` makes KCM sockets.
//!
//! Each `extern "C"` function here turns the raw arguments of one socket call into safe types
//! and calls the multiplexor logic in [`crate::kcm_sock`].

use super::bindings as b;
use super::errno::{enoprotoopt, eprotonosupport, esocktnosupport};
use super::kcm_sk::{KcmSk, SplicePipe};
use super::msg::{RecvMsg, SendMsg};
use super::pernet::Net;
use super::user::{self, SockoptOut};
use super::StaticCObject;
use crate::kcm_sock::{KcmSock, RecvFlags, SockOption};
use kernel::error::from_result;
use kernel::fs::file::FileDescriptorReservation;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::sync::Arc;

/// `struct module *` of this module, for the `owner` fields.
const THIS_MODULE_PTR: *mut b::module = (&raw const kernel::bindings::__this_module)
    .cast_mut()
    .cast();

const fn proto_name(name: &[u8]) -> [c_char; 32] {
    let mut out = [0; 32];
    let mut i = 0;
    while i < name.len() && i < 31 {
        out[i] = name[i] as c_char;
        i += 1;
    }
    out
}

static PROTO: StaticCObject<b::proto> = StaticCObject::new(b::proto {
    name: proto_name(b"KCM"),
    owner: THIS_MODULE_PTR,
    obj_size: core::mem::size_of::<b::kcmrs_sock>() as u32,
    // SAFETY: All-zero is a valid `proto`: no callbacks, null pointers, empty counters.
    ..unsafe { core::mem::zeroed() }
});

const fn kcm_ops(seqpacket: bool) -> b::proto_ops {
    b::proto_ops {
        family: b::PF_KCM as i32,
        owner: THIS_MODULE_PTR,
        release: Some(kcm_release),
        bind: Some(b::sock_no_bind),
        connect: Some(b::sock_no_connect),
        socketpair: Some(b::sock_no_socketpair),
        accept: Some(b::sock_no_accept),
        getname: Some(b::sock_no_getname),
        poll: Some(b::datagram_poll),
        ioctl: Some(kcm_ioctl),
        listen: Some(b::sock_no_listen),
        shutdown: Some(b::sock_no_shutdown),
        setsockopt: Some(kcm_setsockopt),
        getsockopt_iter: Some(kcm_getsockopt),
        sendmsg: Some(kcm_sendmsg),
        recvmsg: Some(kcm_recvmsg),
        mmap: Some(b::sock_no_mmap),
        // As net/kcm: SOCK_SEQPACKET splices messages; SOCK_DGRAM falls back to recvmsg.
        splice_read: if seqpacket {
            Some(kcm_splice_read)
        } else {
            None
        },
        // SAFETY: All-zero is a valid `proto_ops`: the remaining callbacks are absent.
        ..unsafe { core::mem::zeroed() }
    }
}

static DGRAM_OPS: StaticCObject<b::proto_ops> = StaticCObject::new(kcm_ops(false));
static SEQPACKET_OPS: StaticCObject<b::proto_ops> = StaticCObject::new(kcm_ops(true));

static FAMILY: StaticCObject<b::net_proto_family> = StaticCObject::new(b::net_proto_family {
    family: b::PF_KCM as i32,
    create: Some(kcm_create),
    owner: THIS_MODULE_PTR,
});

/// A KCM socket between create and release.
///
/// # Invariants
///
/// `self.0` is a `struct socket` of this family whose `sk` is a `kcmrs_sock` with a live
/// `KcmSock` (stored by [`install_sock`]), and release has not started. The socket core runs no
/// other operation of a socket concurrently with or after its release.
#[derive(Clone, Copy)]
struct KcmSocket(*mut b::socket);

impl KcmSocket {
    /// # Safety
    ///
    /// `sock` must be the socket argument of one of this family's `proto_ops` calls other than
    /// release, and the value must not outlive that call.
    unsafe fn from_raw(sock: *mut b::socket) -> Self {
        // INVARIANT: Guaranteed by the caller; create installed the state before any other call.
        Self(sock)
    }

    fn sk(self) -> *mut b::sock {
        // SAFETY: By the type invariant, the socket is live.
        unsafe { (*self.0).sk }
    }

    fn kcm(&self) -> &KcmSock {
        // SAFETY: By the type invariant, `kcm` holds a live `KcmSock` (a reference of an `Arc`)
        // until release, which cannot run while `self` exists.
        unsafe { &*(*self.sk().cast::<b::kcmrs_sock>()).kcm.cast::<KcmSock>() }
    }

    fn net(self) -> Net {
        // SAFETY: The socket holds its namespace, and pernet init ran before it was created.
        unsafe { Net::from_raw(b::kcmrs_sock_net(self.sk())) }
    }
}

/// Makes `sk` the sock of `sock`; its `kcm` stays empty until [`set_kcm`].
///
/// # Safety
///
/// `sock` must be a socket without a sock and `sk` a fresh `kcmrs_sock` from `sk_alloc` with
/// [`PROTO`].
unsafe fn init_sock(sock: *mut b::socket, sk: *mut b::sock) {
    // SAFETY: Guaranteed by the caller.
    unsafe {
        b::sock_init_data(sock, sk);
        // datagram_poll reports EPOLLHUP on a SOCK_SEQPACKET socket that is not established.
        b::kcmrs_sock_set_state(sk, b::TCP_ESTABLISHED as i32);
        (*sk.cast::<b::kcmrs_sock>()).kcm = core::ptr::null_mut();
    }
}

/// Gives `sk` (initialised by [`init_sock`]) its `KcmSock`.
///
/// # Safety
///
/// `sk` must be a `kcmrs_sock` whose `kcm` is empty.
unsafe fn set_kcm(sk: *mut b::sock, kcm: Arc<KcmSock>) {
    // SAFETY: Guaranteed by the caller; the reference is taken back in release.
    unsafe { (*sk.cast::<b::kcmrs_sock>()).kcm = Arc::into_raw(kcm).cast_mut().cast() };
}

/// Undoes [`init_sock`] after a failure, before the socket has a `KcmSock`.
///
/// # Safety
///
/// `sock` and `sk` must be as after [`init_sock`], with no `KcmSock` set.
unsafe fn uninit_sock(sock: *mut b::socket, sk: *mut b::sock) {
    // SAFETY: Guaranteed by the caller: the sock is ours and holds its one reference.
    unsafe {
        b::kcmrs_sock_orphan(sk);
        (*sock).sk = core::ptr::null_mut();
        b::kcmrs_sock_put(sk);
    }
}

/// Allocates a KCM `struct sock` in `net`.
fn alloc_sock(net: Net, kern: bool) -> Result<*mut b::sock> {
    // SAFETY: `PROTO` is registered for the module's lifetime; `net` is live by its invariant.
    let sk = unsafe {
        b::sk_alloc(
            net.as_ptr(),
            b::PF_KCM as i32,
            kernel::bindings::GFP_KERNEL,
            PROTO.get(),
            i32::from(kern),
        )
    };
    if sk.is_null() {
        return Err(ENOMEM);
    }
    Ok(sk)
}

/// `net_proto_family::create`: a new KCM socket and multiplexor.
///
/// # Safety
///
/// Called by the socket core only, with a fresh `sock` of namespace `net`.
unsafe extern "C" fn kcm_create(
    net: *mut b::net,
    sock: *mut b::socket,
    protocol: c_int,
    kern: c_int,
) -> c_int {
    // SAFETY: The socket core passes a fresh socket in `net`, which pernet init has set up.
    let (net, kind) = unsafe { (Net::from_raw(net), (*sock).type_) };
    from_result(|| {
        let ops = match u32::try_from(kind) {
            Ok(b::sock_type_SOCK_DGRAM) => DGRAM_OPS.get(),
            Ok(b::sock_type_SOCK_SEQPACKET) => SEQPACKET_OPS.get(),
            _ => return Err(esocktnosupport()),
        };
        if protocol != b::KCMPROTO_CONNECTED as c_int {
            return Err(eprotonosupport());
        }
        let sk = alloc_sock(net, kern != 0)?;
        let seqpacket = ops == SEQPACKET_OPS.get();
        // SAFETY: `sock` is fresh and `sk` was just allocated with `PROTO`. The sock is
        // initialised before it joins a multiplexor, which may queue messages on it at once.
        unsafe { init_sock(sock, sk) };
        // SAFETY: `sk` stays live until release, which drops the `KcmSock` first.
        let kcm_sk = unsafe { KcmSk::from_raw(sk) };
        let kcm = KcmSock::new_multiplexor(net.state(), kcm_sk, seqpacket).inspect_err(|_| {
            // SAFETY: As after `init_sock`, without a `KcmSock`.
            unsafe { uninit_sock(sock, sk) };
        })?;
        // SAFETY: `sk` was initialised above and has no `KcmSock` yet.
        unsafe {
            set_kcm(sk, kcm);
            (*sock).ops = ops;
        }
        Ok(0)
    })
}

/// `proto_ops::release`.
///
/// # Safety
///
/// Called by the socket core only, once per socket, with no other call of it running.
unsafe extern "C" fn kcm_release(sock: *mut b::socket) -> c_int {
    // SAFETY: The core calls release once, with no other operation of the socket running.
    let sk = unsafe { (*sock).sk };
    if sk.is_null() {
        return 0;
    }
    // SAFETY: `sk` is our `kcmrs_sock`; its `kcm` came from `Arc::into_raw` in `set_kcm` and is
    // taken back exactly once, here. Dropping it leaves the multiplexor before the sock goes.
    let kcm = unsafe {
        core::ptr::replace(
            &raw mut (*sk.cast::<b::kcmrs_sock>()).kcm,
            core::ptr::null_mut(),
        )
    };
    if !kcm.is_null() {
        // SAFETY: See above.
        drop(unsafe { Arc::from_raw(kcm.cast::<KcmSock>()) });
    }
    // SAFETY: The sock is ours; after this the socket has none and the last reference goes.
    unsafe {
        b::kcmrs_sock_orphan(sk);
        (*sock).sk = core::ptr::null_mut();
        b::kcmrs_sock_put(sk);
    }
    0
}

/// SIOCKCMCLONE: a new socket on the multiplexor of `osock`, returned as a new fd.
fn clone_socket(osock: KcmSocket, arg: usize) -> Result {
    let reservation = FileDescriptorReservation::get_unused_fd_flags(0)?;
    let sk = alloc_sock(osock.net(), false)?;
    // SAFETY: FFI call with no preconditions.
    let newsock = unsafe { b::sock_alloc() };
    if newsock.is_null() {
        // SAFETY: `sk` is unused and ours.
        unsafe { b::sk_free(sk) };
        return Err(ENFILE);
    }
    // SAFETY: `newsock` is fresh; it takes the type and ops of `osock` and, like every socket
    // of this family, a reference on the module that owns the ops (sock_release puts it).
    unsafe {
        (*newsock).type_ = (*osock.0).type_;
        (*newsock).ops = (*osock.0).ops;
        b::kcmrs_module_get(THIS_MODULE_PTR);
        init_sock(newsock, sk);
    }
    // SAFETY: `sk` stays live until release, which drops the `KcmSock` first.
    let kcm_sk = unsafe { KcmSk::from_raw(sk) };
    match osock.kcm().new_member(kcm_sk) {
        // SAFETY: `sk` was initialised above and has no `KcmSock` yet.
        Ok(kcm) => unsafe { set_kcm(sk, kcm) },
        Err(e) => {
            // SAFETY: As after `init_sock`; releasing `newsock` then finds no sock.
            unsafe {
                uninit_sock(newsock, sk);
                b::sock_release(newsock);
            }
            return Err(e);
        }
    }
    // SAFETY: On failure this releases `newsock` (and so the new sock and member) itself.
    let file = unsafe { b::sock_alloc_file(newsock, 0, core::ptr::null()) };
    // `sock_alloc_file` returns a file or an `ERR_PTR`.
    let file = kernel::error::from_err_ptr(file)?;
    // SAFETY: `file` is a new file whose one reference we own; `File` is a transparent wrapper
    // of `struct file`.
    let file: ARef<kernel::fs::File> =
        unsafe { ARef::from_raw(core::ptr::NonNull::new_unchecked(file.cast())) };
    // On a fault the file (and the new socket) is closed and the fd freed by the drops.
    user::write_ioctl_int(arg, reservation.reserved_fd() as i32)?;
    reservation.fd_install(file);
    Ok(())
}

/// `proto_ops::ioctl`: SIOCKCMATTACH, SIOCKCMUNATTACH, SIOCKCMCLONE.
///
/// # Safety
///
/// Called by the socket core only, on a KCM socket that is not being released.
unsafe extern "C" fn kcm_ioctl(sock: *mut b::socket, cmd: c_uint, arg: c_ulong) -> c_int {
    // SAFETY: An operation call on a live KCM socket.
    let sock = unsafe { KcmSocket::from_raw(sock) };
    from_result(|| {
        match cmd {
            b::SIOCKCMATTACH => {
                let [fd, bpf_fd] = user::read_ioctl_ints::<2>(arg)?;
                sock.kcm().attach(fd, bpf_fd)?
            }
            b::SIOCKCMUNATTACH => {
                let [fd] = user::read_ioctl_ints::<1>(arg)?;
                sock.kcm().unattach(fd)?
            }
            b::SIOCKCMCLONE => clone_socket(sock, arg)?,
            _ => return Err(ENOIOCTLCMD),
        }
        Ok(0)
    })
}

/// `proto_ops::setsockopt` for levels other than SOL_SOCKET.
///
/// # Safety
///
/// Called by the socket core only, on a KCM socket that is not being released.
unsafe extern "C" fn kcm_setsockopt(
    sock: *mut b::socket,
    level: c_int,
    optname: c_int,
    optval: b::sockptr_t,
    optlen: c_uint,
) -> c_int {
    // SAFETY: An operation call on a live KCM socket.
    let sock = unsafe { KcmSocket::from_raw(sock) };
    from_result(|| {
        if level != b::SOL_KCM as c_int {
            return Err(enoprotoopt());
        }
        if (optlen as usize) < core::mem::size_of::<c_int>() {
            return Err(EINVAL);
        }
        let value = user::read_sockopt_int(optval)?;
        sock.kcm()
            .set_option(SockOption::from_raw(optname)?, value)?;
        Ok(0)
    })
}

/// `proto_ops::getsockopt_iter` for levels other than SOL_SOCKET.
///
/// # Safety
///
/// Called by the socket core only, on a KCM socket that is not being released, with a
/// `sockopt_t` valid for the call.
unsafe extern "C" fn kcm_getsockopt(
    sock: *mut b::socket,
    level: c_int,
    optname: c_int,
    opt: *mut b::sockopt_t,
) -> c_int {
    // SAFETY: An operation call on a live KCM socket.
    let sock = unsafe { KcmSocket::from_raw(sock) };
    // SAFETY: `opt` is the core's `sockopt_t` for this call; `out` is dropped before we return.
    let mut out = unsafe { SockoptOut::from_raw(opt) };
    from_result(|| {
        if level != b::SOL_KCM as c_int {
            return Err(enoprotoopt());
        }
        let offered = usize::try_from(out.offered_len()).map_err(|_| EINVAL)?;
        let value = sock
            .kcm()
            .option(SockOption::from_raw(optname)?)
            .to_ne_bytes();
        out.put(&value[..offered.min(value.len())])?;
        Ok(0)
    })
}

/// `proto_ops::sendmsg`.
///
/// # Safety
///
/// Called by the socket core only, on a KCM socket that is not being released.
unsafe extern "C" fn kcm_sendmsg(sock: *mut b::socket, msg: *mut b::msghdr, _len: usize) -> c_int {
    // SAFETY: An operation call on a live KCM socket.
    let sock = unsafe { KcmSocket::from_raw(sock) };
    // SAFETY: `msg` is this call's.
    let mut input = unsafe { SendMsg::from_raw(msg) };
    let nonblock = input.flags() & b::MSG_DONTWAIT != 0;
    // SAFETY: The sock is live.
    let timeo = unsafe { b::kcmrs_sock_sndtimeo(sock.sk(), nonblock) };
    from_result(|| Ok(sock.kcm().send(&mut input, nonblock, timeo)? as c_int))
}

/// `proto_ops::recvmsg`.
///
/// # Safety
///
/// Called by the socket core only, on a KCM socket that is not being released.
unsafe extern "C" fn kcm_recvmsg(
    sock: *mut b::socket,
    msg: *mut b::msghdr,
    len: usize,
    flags: c_int,
) -> c_int {
    // SAFETY: An operation call on a live KCM socket.
    let sock = unsafe { KcmSocket::from_raw(sock) };
    // SAFETY: `msg` is this call's.
    let mut out = unsafe { RecvMsg::from_raw(msg) };
    let flags = flags as u32;
    let recv_flags = RecvFlags {
        nonblock: flags & b::MSG_DONTWAIT != 0,
        peek: flags & b::MSG_PEEK != 0,
    };
    from_result(|| Ok(sock.kcm().recv(&mut out, len, recv_flags)? as c_int))
}

/// `proto_ops::splice_read` of SOCK_SEQPACKET sockets.
///
/// # Safety
///
/// Called by the socket core only, on a KCM socket that is not being released, with the
/// call's pipe.
unsafe extern "C" fn kcm_splice_read(
    sock: *mut b::socket,
    _ppos: *mut b::loff_t,
    pipe: *mut b::pipe_inode_info,
    len: usize,
    flags: c_uint,
) -> isize {
    // SAFETY: An operation call on a live KCM socket.
    let kcm_socket = unsafe { KcmSocket::from_raw(sock) };
    // SAFETY: `sock` is live; the file flag is read once.
    let nonblock =
        flags & b::SPLICE_F_NONBLOCK != 0 || unsafe { b::kcmrs_socket_nonblocking(sock) };
    // SAFETY: `pipe` is this call's.
    let pipe = unsafe { SplicePipe::from_raw(pipe) };
    from_result(|| Ok(kcm_socket.kcm().splice(&pipe, len, nonblock)? as isize))
}

/// Registration of the proto and the PF_KCM family; unregisters on drop.
pub(crate) struct FamilyRegistration {
    pernet: Option<super::pernet::PernetRegistration>,
}

impl FamilyRegistration {
    /// Registers the proto, the per-namespace state and the family, in that order, so that no
    /// socket can be created before its namespace state and proto exist.
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: `PROTO` is a static that stays registered until `drop`.
        kernel::error::to_result(unsafe { b::proto_register(PROTO.get(), 1) })?;
        let pernet = match super::pernet::PernetRegistration::register() {
            Ok(pernet) => pernet,
            Err(e) => {
                // SAFETY: Registered just above.
                unsafe { b::proto_unregister(PROTO.get()) };
                return Err(e);
            }
        };
        // SAFETY: `FAMILY` is a static that stays registered until `drop`.
        if let Err(e) = kernel::error::to_result(unsafe { b::sock_register(FAMILY.get()) }) {
            drop(pernet);
            // SAFETY: Registered above.
            unsafe { b::proto_unregister(PROTO.get()) };
            return Err(e);
        }
        Ok(Self {
            pernet: Some(pernet),
        })
    }
}

impl Drop for FamilyRegistration {
    fn drop(&mut self) {
        // No socket exists: each one holds a reference on this module, so exit cannot run.
        // SAFETY: `register` succeeded for the family.
        unsafe { b::sock_unregister(b::PF_KCM as i32) };
        drop(self.pernet.take());
        // SAFETY: `register` succeeded for the proto; no sock of it remains.
        unsafe { b::proto_unregister(PROTO.get()) };
    }
}
