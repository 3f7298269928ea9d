/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kcm-rs: the C interfaces the module uses that the kernel crate does not
 * bind. bindgen reads this header at build time with the kernel's own C
 * flags, so every layout below matches the configuration of the target
 * kernel. The kcmrs_* functions are defined in kcm_rs_helpers.c: each one
 * only forwards to a static inline or a macro, which bindgen cannot bind.
 */
#ifndef KCM_RS_H
#define KCM_RS_H

#include <linux/errno.h>
#include <linux/file.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/poll.h>
#include <linux/skbuff.h>
#include <linux/socket.h>
#include <linux/sockptr.h>
#include <linux/uio.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <net/sock.h>
#include <net/tcp_states.h>
#include <uapi/linux/kcm.h>

/*
 * The sock object of a KCM socket. @kcm owns one reference of the Rust
 * KcmSock (Arc::into_raw) from create until release, NULL otherwise.
 */
struct kcmrs_sock {
	struct sock sk;
	void *kcm;
};

void kcmrs_spin_lock_bh(spinlock_t *lock);
void kcmrs_spin_unlock_bh(spinlock_t *lock);

struct net *kcmrs_sock_net(const struct sock *sk);
void kcmrs_sock_set_state(struct sock *sk, int state);
void kcmrs_sock_orphan(struct sock *sk);
void kcmrs_sock_put(struct sock *sk);
void kcmrs_module_get(struct module *owner);
void **kcmrs_net_generic(const struct net *net, unsigned int id);
int kcmrs_copy_from_sockptr(void *dst, sockptr_t src, size_t size);
size_t kcmrs_copy_to_iter(const void *src, size_t len, struct iov_iter *to);
bool kcmrs_sockptr_is_null(sockptr_t ptr);

#endif /* KCM_RS_H */
