// SPDX-License-Identifier: GPL-2.0
/*
 * kcm-rs: out-of-line copies of the static inlines and macros that the Rust
 * code needs. Nothing here holds logic; see kcm_rs.h.
 */
#include <net/tls.h>
#include "kcm_rs.h"

void kcmrs_spin_lock_bh(spinlock_t *lock)
{
	spin_lock_bh(lock);
}

void kcmrs_spin_unlock_bh(spinlock_t *lock)
{
	spin_unlock_bh(lock);
}

bool kcmrs_spin_trylock_bh(spinlock_t *lock)
{
	return spin_trylock_bh(lock);
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

void kcmrs_sock_hold(struct sock *sk)
{
	sock_hold(sk);
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

/*
 * While a TCP socket is attached, its upper-layer-protocol slot holds this
 * marker. TCP_ULP then fails with EEXIST, so kernel TLS cannot stack its
 * callbacks over the psock's (and later hand them back after unattach or
 * module unload); getsockopt(TCP_ULP) reads "kcm". The marker is never
 * registered, so no user can ask for it by name. The module reference it
 * holds is the one tcp_cleanup_ulp() would drop if the socket died attached.
 */
static const struct tcp_ulp_ops kcmrs_ulp_marker = {
	.name = "kcm",
	.owner = THIS_MODULE,
};

/*
 * A TCP socket whose kernel TLS is set up in software for both directions:
 * read_sock() hands out decrypted records and sendmsg() encrypts. Device
 * offload (TLS_HW) is not taken: nothing here can test it.
 */
static bool kcmrs_sk_is_tls_sw(struct sock *sk)
{
#if IS_ENABLED(CONFIG_TLS)
	const struct tcp_ulp_ops *ulp = inet_csk(sk)->icsk_ulp_ops;
	struct tls_context *ctx;

	if (!ulp || strcmp(ulp->name, "tls"))
		return false;
	ctx = tls_get_ctx(sk);
	return ctx && ctx->rx_conf == TLS_SW && ctx->tx_conf == TLS_SW;
#else
	return false;
#endif
}

/* Under lock_sock: what carries the socket's stream, if kcm-rs can attach it. */
enum kcmrs_transport kcmrs_sk_transport(struct sock *sk)
{
	if (sk->sk_type != SOCK_STREAM ||
	    (sk->sk_family != AF_INET && sk->sk_family != AF_INET6))
		return KCMRS_TRANSPORT_NONE;
	if (IS_ENABLED(CONFIG_MPTCP) && sk->sk_protocol == IPPROTO_MPTCP)
		return KCMRS_TRANSPORT_MPTCP;
	if (sk->sk_protocol != IPPROTO_TCP)
		return KCMRS_TRANSPORT_NONE;
	if (kcmrs_sk_is_tls_sw(sk))
		return KCMRS_TRANSPORT_TLS;
	/* Any other ULP is refused by kcmrs_sk_claim_ulp_slot(). */
	return KCMRS_TRANSPORT_TCP;
}

/*
 * Under lock_sock, for a plain TCP socket: 0, -EALREADY when kcm-rs has it,
 * -EOPNOTSUPP with another ULP.
 */
int kcmrs_sk_claim_ulp_slot(struct sock *sk)
{
	struct inet_connection_sock *icsk = inet_csk(sk);

	if (icsk->icsk_ulp_ops == &kcmrs_ulp_marker)
		return -EALREADY;
	if (icsk->icsk_ulp_ops)
		return -EOPNOTSUPP;
	__module_get(THIS_MODULE);
	icsk->icsk_ulp_ops = &kcmrs_ulp_marker;
	return 0;
}

/* Under lock_sock: gives back a slot kcmrs_sk_claim_ulp_slot() took. */
void kcmrs_sk_release_ulp_slot(struct sock *sk)
{
	struct inet_connection_sock *icsk = inet_csk(sk);

	if (sk->sk_protocol != IPPROTO_TCP || icsk->icsk_ulp_ops != &kcmrs_ulp_marker)
		return;
	icsk->icsk_ulp_ops = NULL;
	module_put(THIS_MODULE);
}

int kcmrs_sk_state(const struct sock *sk)
{
	return READ_ONCE(sk->sk_state);
}

int kcmrs_sk_rcvbuf(const struct sock *sk)
{
	return READ_ONCE(sk->sk_rcvbuf);
}

int kcmrs_sk_rmem_alloc(const struct sock *sk)
{
	return sk_rmem_alloc_get(sk);
}

int kcmrs_sk_err(const struct sock *sk)
{
	return READ_ONCE(sk->sk_err);
}

long kcmrs_sk_rcvtimeo(const struct sock *sk)
{
	return READ_ONCE(sk->sk_rcvtimeo);
}

long kcmrs_sock_rcvtimeo(const struct sock *sk, bool noblock)
{
	return sock_rcvtimeo(sk, noblock);
}

long kcmrs_sock_sndtimeo(const struct sock *sk, bool noblock)
{
	return sock_sndtimeo(sk, noblock);
}

bool kcmrs_sk_has_sleeper(struct sock *sk)
{
	bool ret;

	rcu_read_lock();
	ret = skwq_has_sleeper(rcu_dereference(sk->sk_wq));
	rcu_read_unlock();
	return ret;
}

void kcmrs_sk_report_error(struct sock *sk, int err)
{
	WRITE_ONCE(sk->sk_err, err);
	sk_error_report(sk);
}

void kcmrs_sk_data_ready(struct sock *sk)
{
	sk->sk_data_ready(sk);
}

void kcmrs_lock_sock(struct sock *sk)
{
	lock_sock(sk);
}

struct sk_buff_head *kcmrs_sk_receive_queue(struct sock *sk)
{
	return &sk->sk_receive_queue;
}

/*
 * Where the psock hears of new data: the socket's own sk_data_ready, or, with
 * kernel TLS, the callback TLS calls once a whole record has arrived (TLS
 * keeps sk_data_ready for its record parser).
 */
static void (**kcmrs_data_ready_slot(struct sock *sk, bool tls_records))(struct sock *sk)
{
#if IS_ENABLED(CONFIG_TLS)
	if (tls_records)
		return &tls_sw_ctx_rx(tls_get_ctx(sk))->saved_data_ready;
#endif
	return &sk->sk_data_ready;
}

int kcmrs_sk_take_callbacks(struct sock *sk, bool tls_records, void *user_data,
			    void (*data_ready)(struct sock *sk),
			    void (*state_change)(struct sock *sk),
			    struct kcmrs_saved_callbacks *saved)
{
	void (**slot)(struct sock *sk) = kcmrs_data_ready_slot(sk, tls_records);

	write_lock_bh(&sk->sk_callback_lock);
	/* Another user (KCM, sockmap, a ULP, ...) has the socket. */
	if (sk->sk_user_data) {
		write_unlock_bh(&sk->sk_callback_lock);
		return -EALREADY;
	}
	saved->data_ready = *slot;
	saved->state_change = sk->sk_state_change;
	sk->sk_user_data = user_data;
	WRITE_ONCE(*slot, data_ready);
	sk->sk_state_change = state_change;
	write_unlock_bh(&sk->sk_callback_lock);
	return 0;
}

void *kcmrs_sk_restore_callbacks(struct sock *sk, bool tls_records,
				 const struct kcmrs_saved_callbacks *saved)
{
	void (**slot)(struct sock *sk) = kcmrs_data_ready_slot(sk, tls_records);
	void *user_data;

	write_lock_bh(&sk->sk_callback_lock);
	user_data = sk->sk_user_data;
	sk->sk_user_data = NULL;
	WRITE_ONCE(*slot, saved->data_ready);
	sk->sk_state_change = saved->state_change;
	write_unlock_bh(&sk->sk_callback_lock);
	return user_data;
}

/*
 * The data-ready callback a socket has without kcm-rs, for a psock callback
 * that runs after unattach (TLS or TCP read the pointer just before).
 */
void kcmrs_sk_own_data_ready(struct sock *sk, bool tls_records)
{
	READ_ONCE(*kcmrs_data_ready_slot(sk, tls_records))(sk);
}

/* TCP_CORK of a TCP (also with TLS) or MPTCP socket; takes the socket lock. */
void kcmrs_sk_set_cork(struct sock *sk, bool on)
{
	int val = on;

	if (sk->sk_protocol == IPPROTO_TCP)
		tcp_sock_set_cork(sk, on);
	else
		sk->sk_prot->setsockopt(sk, SOL_TCP, TCP_CORK, KERNEL_SOCKPTR(&val),
					sizeof(val));
}

void *kcmrs_sk_user_data_lock(struct sock *sk)
{
	read_lock_bh(&sk->sk_callback_lock);
	return sk->sk_user_data;
}

void kcmrs_sk_user_data_unlock(struct sock *sk)
{
	read_unlock_bh(&sk->sk_callback_lock);
}

void kcmrs_sk_call_saved(void (*callback)(struct sock *sk), struct sock *sk)
{
	callback(sk);
}

struct socket *kcmrs_sockfd_lookup(int fd, int *err)
{
	return sockfd_lookup(fd, err);
}

struct bpf_prog *kcmrs_bpf_prog_get_socket_filter(int fd)
{
	return bpf_prog_get_type(fd, BPF_PROG_TYPE_SOCKET_FILTER);
}

u32 kcmrs_bpf_prog_run(const struct bpf_prog *prog, struct sk_buff *skb)
{
	/* The program runs with migration disabled, as bpf_prog_run requires. */
	return bpf_prog_run_pin_on_cpu(prog, skb);
}

bool kcmrs_sk_owned_by_user(const struct sock *sk)
{
	return sock_owned_by_user_nocheck(sk);
}

int kcmrs_read_sock(struct socket *sock, read_descriptor_t *desc,
		    sk_read_actor_t actor)
{
	return sock->ops->read_sock(sock->sk, desc, actor);
}

/*
 * Receive-path allocations: charged to the task in process context; in softirq
 * (atomic) they must not sleep, and a failure sends the read to process context.
 */
static gfp_t kcmrs_rx_gfp(bool atomic)
{
	return (atomic ? GFP_ATOMIC : GFP_KERNEL_ACCOUNT) | __GFP_NOWARN;
}

struct sk_buff *kcmrs_alloc_skb(unsigned int size, bool atomic)
{
	return alloc_skb(size, kcmrs_rx_gfp(atomic));
}

unsigned int kcmrs_skb_len(const struct sk_buff *skb)
{
	return skb->len;
}

unsigned int kcmrs_skb_tailroom(const struct sk_buff *skb)
{
	return skb_tailroom(skb);
}

void *kcmrs_skb_put(struct sk_buff *skb, unsigned int len)
{
	return skb_put(skb, len);
}

struct kcmrs_rx_cb *kcmrs_skb_rx_cb(struct sk_buff *skb)
{
	BUILD_BUG_ON(sizeof(struct kcmrs_rx_cb) > sizeof(skb->cb));
	return (struct kcmrs_rx_cb *)skb->cb;
}

/*
 * A clone of skb (a received buffer lent to a read actor) for a message that takes used bytes
 * of it. The clone is charged its share of the buffer's memory, so the messages cut from one
 * buffer together are charged about what it was.
 */
static struct sk_buff *kcmrs_clone_share(struct sk_buff *skb, unsigned int used, gfp_t gfp)
{
	struct sk_buff *clone = skb_clone(skb, gfp);
	u64 share;

	if (!clone)
		return NULL;
	share = div_u64((u64)skb->truesize * used, skb->len);
	clone->truesize = SKB_DATA_ALIGN(sizeof(struct sk_buff)) + max_t(u64, share, used);
	return clone;
}

/* The len bytes of skb from start, as a message that shares the buffer's data. */
struct sk_buff *kcmrs_skb_clone_window(struct sk_buff *skb, unsigned int start, unsigned int len,
				       bool atomic)
{
	struct sk_buff *clone;
	struct kcmrs_rx_cb *cb;

	if (WARN_ON_ONCE(!len || start > skb->len || len > skb->len - start))
		return NULL;
	clone = kcmrs_clone_share(skb, len, kcmrs_rx_gfp(atomic));
	if (!clone)
		return NULL;
	cb = kcmrs_skb_rx_cb(clone);
	cb->offset = 0;
	cb->start = start;
	cb->len = len;
	cb->chain = 0;
	return clone;
}

/*
 * A message that spans received buffers: an empty buffer whose frag_list holds shared clones
 * of them (kcmrs_clone_share). Every member but the last adds all of its data; the message is
 * the rx_cb len bytes from rx_cb start of their concatenation, which is what
 * skb_copy_datagram_iter and skb_splice_bits walk.
 */
static void kcmrs_chain_link(struct sk_buff *chain, struct sk_buff *member)
{
	struct sk_buff **tail = &skb_shinfo(chain)->frag_list;

	while (*tail)
		tail = &(*tail)->next;
	*tail = member;
	chain->len += member->len;
	chain->data_len += member->len;
	chain->truesize += member->truesize;
}

struct sk_buff *kcmrs_skb_chain_start(struct sk_buff *skb, unsigned int start, bool atomic)
{
	gfp_t gfp = kcmrs_rx_gfp(atomic);
	struct sk_buff *chain, *member;
	struct kcmrs_rx_cb *cb;

	if (WARN_ON_ONCE(start >= skb->len))
		return NULL;
	chain = alloc_skb(0, gfp);
	if (!chain)
		return NULL;
	member = kcmrs_clone_share(skb, skb->len - start, gfp);
	if (!member) {
		kfree_skb(chain);
		return NULL;
	}
	kcmrs_chain_link(chain, member);
	cb = kcmrs_skb_rx_cb(chain);
	cb->offset = 0;
	cb->start = start;
	cb->len = skb->len - start;
	cb->chain = 1;
	return chain;
}

int kcmrs_skb_chain_extend(struct sk_buff *chain, struct sk_buff *skb, unsigned int used,
			   bool atomic)
{
	struct sk_buff *member;

	/* Only a chain of ours is extended, never a clone's shared frag_list. */
	if (WARN_ON_ONCE(!used || used > skb->len || !kcmrs_skb_rx_cb(chain)->chain))
		return -EINVAL;
	member = kcmrs_clone_share(skb, used, kcmrs_rx_gfp(atomic));
	if (!member)
		return -ENOMEM;
	kcmrs_chain_link(chain, member);
	kcmrs_skb_rx_cb(chain)->len += used;
	return 0;
}

struct sk_buff *kcmrs_skb_peek(struct sk_buff_head *queue)
{
	return skb_peek(queue);
}

struct sk_buff *kcmrs_skb_dequeue(struct sk_buff_head *queue)
{
	return skb_dequeue(queue);
}

void kcmrs_skb_set_owner_r(struct sk_buff *skb, struct sock *sk)
{
	skb_set_owner_r(skb, sk);
}

void kcmrs_kfree_skb(struct sk_buff *skb)
{
	kfree_skb(skb);
}

size_t kcmrs_copy_from_iter(void *dst, size_t len, struct iov_iter *from)
{
	return copy_from_iter(dst, len, from);
}

size_t kcmrs_msg_data_left(const struct msghdr *msg)
{
	return msg_data_left(msg);
}

/*
 * Unbound: the receive work runs on an idle CPU if there is one. A per-CPU, high-priority queue
 * woke the reader of a reply sooner (kcmperf rr, 1 thread: about +30%) but ran the work ahead of
 * the readers on their own CPU, and a reader taking one message per recv got 2 to 3.5 times
 * fewer messages through (kcmperf stream-recv, 64 B and 4 KiB).
 */
struct workqueue_struct *kcmrs_alloc_workqueue(void)
{
	return alloc_workqueue("kcm_rs", WQ_UNBOUND, 0);
}

void kcmrs_skb_orphan(struct sk_buff *skb)
{
	skb_orphan(skb);
}

int kcmrs_proc_create(struct net *net, int (*show_kcm)(struct seq_file *, void *),
		      int (*show_stats)(struct seq_file *, void *))
{
	if (!proc_create_net_single("kcm_stats", 0444, net->proc_net, show_stats, NULL))
		return -ENOMEM;
	if (!proc_create_net_single("kcm", 0444, net->proc_net, show_kcm, NULL)) {
		remove_proc_entry("kcm_stats", net->proc_net);
		return -ENOMEM;
	}
	return 0;
}

void kcmrs_proc_remove(struct net *net)
{
	remove_proc_entry("kcm", net->proc_net);
	remove_proc_entry("kcm_stats", net->proc_net);
}

struct net *kcmrs_seq_file_single_net(struct seq_file *seq)
{
	return seq_file_single_net(seq);
}

int kcmrs_sk_receive_qlen(struct sock *sk)
{
	return READ_ONCE(sk->sk_receive_queue.qlen);
}

int kcmrs_sk_write_qlen(struct sock *sk)
{
	return READ_ONCE(sk->sk_write_queue.qlen);
}

int kcmrs_sk_wmem_alloc(struct sock *sk)
{
	return refcount_read(&sk->sk_wmem_alloc);
}

ssize_t kcmrs_skb_splice(struct sk_buff *skb, struct sock *sk, unsigned int offset,
			 struct pipe_inode_info *pipe, unsigned int len, unsigned int flags)
{
	return skb_splice_bits(skb, sk, offset, pipe, len, flags);
}

bool kcmrs_socket_nonblocking(struct socket *sock)
{
	return sock->file && (sock->file->f_flags & O_NONBLOCK);
}

int kcmrs_sk_stream_wait_space(struct sock *sk, long *timeo)
{
	int err;

	lock_sock(sk);
	err = sk_stream_wait_memory(sk, timeo);
	release_sock(sk);
	return err;
}

int kcmrs_sk_stream_wspace(const struct sock *sk)
{
	return sk_stream_wspace(sk);
}

int kcmrs_sk_sndbuf(const struct sock *sk)
{
	return READ_ONCE(sk->sk_sndbuf);
}

bool kcmrs_fatal_signal_pending(void)
{
	return fatal_signal_pending(current);
}

int kcmrs_sk_wmem_queued(const struct sock *sk)
{
	return READ_ONCE(sk->sk_wmem_queued);
}
