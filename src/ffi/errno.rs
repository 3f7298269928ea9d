// SPDX-License-Identifier: GPL-2.0

//! Socket errors that `kernel::error::code` has no constant for.

use super::bindings as b;
use kernel::error::Error;

fn from_uapi(errno: u32) -> Error {
    // The constants are small positive errnos, so the negation is in range.
    Error::from_errno(-(errno as i32))
}

/// The socket type is not SOCK_DGRAM or SOCK_SEQPACKET.
pub(crate) fn esocktnosupport() -> Error {
    from_uapi(b::ESOCKTNOSUPPORT)
}

/// The protocol is not KCMPROTO_CONNECTED.
pub(crate) fn eprotonosupport() -> Error {
    from_uapi(b::EPROTONOSUPPORT)
}

/// An unknown option or level.
pub(crate) fn enoprotoopt() -> Error {
    from_uapi(b::ENOPROTOOPT)
}

/// The stream broke its framing (a length inside bytes already taken from it).
pub(crate) fn eproto() -> Error {
    from_uapi(b::EPROTO)
}

/// An operation this kind of socket does not do.
pub(crate) fn eopnotsupp() -> Error {
    from_uapi(b::EOPNOTSUPP)
}

/// An operation on the socket is already under way.
pub(crate) fn ealready() -> Error {
    from_uapi(b::EALREADY)
}
