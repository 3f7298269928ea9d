// SPDX-License-Identifier: GPL-2.0
/*
 * kcm-rs: out-of-line copies of the static inlines and macros that the Rust
 * code needs. Nothing here holds logic; see kcm_rs.h.
 */
#include "kcm_rs.h"

void kcmrs_spin_lock_bh(spinlock_t *lock)
{
	spin_lock_bh(lock);
}

void kcmrs_spin_unlock_bh(spinlock_t *lock)
{
	spin_unlock_bh(lock);
}

struct net *kcmrs_sock_net(const struct sock *sk)
{
	return sock_net(sk);
}

void kcmrs_sock_set_state(struct sock *sk, int state)
{
	sk->sk_state = state;
}

void kcmrs_sock_orphan(struct sock *sk)
{
	sock_orphan(sk);
}

void kcmrs_sock_put(struct sock *sk)
{
	sock_put(sk);
}

void kcmrs_module_get(struct module *owner)
{
	__module_get(owner);
}

void **kcmrs_net_generic(const struct net *net, unsigned int id)
{
	return net_generic(net, id);
}

int kcmrs_copy_from_sockptr(void *dst, sockptr_t src, size_t size)
{
	return copy_from_sockptr(dst, src, size) ? -EFAULT : 0;
}

size_t kcmrs_copy_to_iter(const void *src, size_t len, struct iov_iter *to)
{
	return copy_to_iter(src, len, to);
}

bool kcmrs_sockptr_is_null(sockptr_t ptr)
{
	return sockptr_is_null(ptr);
}
