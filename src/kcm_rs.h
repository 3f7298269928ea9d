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

#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/filter.h>
#include <linux/workqueue.h>
#include <linux/file.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/poll.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/seq_file_net.h>
#include <linux/skbuff.h>
#include <linux/socket.h>
#include <linux/sockptr.h>
#include <linux/splice.h>
#include <linux/uio.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <net/sock.h>
#include <net/tcp.h>
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
bool kcmrs_spin_trylock_bh(spinlock_t *lock);

struct net *kcmrs_sock_net(const struct sock *sk);
void kcmrs_sock_set_state(struct sock *sk, int state);
void kcmrs_sock_orphan(struct sock *sk);
void kcmrs_sock_hold(struct sock *sk);
void kcmrs_sock_put(struct sock *sk);
void kcmrs_module_get(struct module *owner);
void **kcmrs_net_generic(const struct net *net, unsigned int id);
int kcmrs_copy_from_sockptr(void *dst, sockptr_t src, size_t size);
size_t kcmrs_copy_to_iter(const void *src, size_t len, struct iov_iter *to);
bool kcmrs_sockptr_is_null(sockptr_t ptr);

/* The receive state kcm-rs keeps in skb->cb of a queued message. */
struct kcmrs_rx_cb {
	/* Bytes of the message already returned by SOCK_SEQPACKET reads. */
	u32 offset;
	/*
	 * A message that shares a received buffer's data (a clone): it is the len bytes from
	 * start. len 0: the message is the whole buffer.
	 */
	u32 start;
	u32 len;
	/* A chain (kcmrs_skb_chain_start): its frag_list holds clones of received buffers. */
	u32 chain;
};

/* Callbacks of an attached socket, saved at attach and restored at unattach. */
struct kcmrs_saved_callbacks {
	void (*data_ready)(struct sock *sk);
	void (*state_change)(struct sock *sk);
};

/* What carries the byte stream of a socket kcm-rs can attach. */
enum kcmrs_transport {
	KCMRS_TRANSPORT_NONE,
	KCMRS_TRANSPORT_TCP,
	KCMRS_TRANSPORT_MPTCP,
	KCMRS_TRANSPORT_TLS,
};

/* struct sock fields (struct sock is opaque to Rust). */
enum kcmrs_transport kcmrs_sk_transport(struct sock *sk);
int kcmrs_sk_claim_ulp_slot(struct sock *sk);
void kcmrs_sk_release_ulp_slot(struct sock *sk);
int kcmrs_sk_state(const struct sock *sk);
int kcmrs_sk_rcvbuf(const struct sock *sk);
int kcmrs_sk_rmem_alloc(const struct sock *sk);
int kcmrs_sk_err(const struct sock *sk);
long kcmrs_sk_rcvtimeo(const struct sock *sk);
long kcmrs_sock_rcvtimeo(const struct sock *sk, bool noblock);
long kcmrs_sock_sndtimeo(const struct sock *sk, bool noblock);
bool kcmrs_sk_has_sleeper(struct sock *sk);
void kcmrs_sk_report_error(struct sock *sk, int err);
void kcmrs_sk_data_ready(struct sock *sk);
void kcmrs_lock_sock(struct sock *sk);
struct sk_buff_head *kcmrs_sk_receive_queue(struct sock *sk);

/* Callbacks of an attached socket, under sk_callback_lock. */
/* tls_records: data_ready is TLS's record callback, not sk_data_ready. */
int kcmrs_sk_take_callbacks(struct sock *sk, bool tls_records, void *user_data,
			    void (*data_ready)(struct sock *sk),
			    void (*state_change)(struct sock *sk),
			    struct kcmrs_saved_callbacks *saved);
void *kcmrs_sk_restore_callbacks(struct sock *sk, bool tls_records,
				 const struct kcmrs_saved_callbacks *saved);
void *kcmrs_sk_user_data_lock(struct sock *sk);
void kcmrs_sk_user_data_unlock(struct sock *sk);
void kcmrs_sk_call_saved(void (*callback)(struct sock *sk), struct sock *sk);
void kcmrs_sk_own_data_ready(struct sock *sk, bool tls_records);
void kcmrs_sk_set_cork(struct sock *sk, bool on);

/* Sockets, files, BPF and reading an attached socket. */
struct socket *kcmrs_sockfd_lookup(int fd, int *err);
struct bpf_prog *kcmrs_bpf_prog_get_socket_filter(int fd);
u32 kcmrs_bpf_prog_run(const struct bpf_prog *prog, struct sk_buff *skb);
bool kcmrs_sk_owned_by_user(const struct sock *sk);
int kcmrs_read_sock(struct socket *sock, read_descriptor_t *desc,
		    sk_read_actor_t actor);

/* sk_buff (opaque to Rust). */
struct sk_buff *kcmrs_alloc_skb(unsigned int size, bool atomic);
unsigned int kcmrs_skb_len(const struct sk_buff *skb);
unsigned int kcmrs_skb_tailroom(const struct sk_buff *skb);
void *kcmrs_skb_put(struct sk_buff *skb, unsigned int len);
struct kcmrs_rx_cb *kcmrs_skb_rx_cb(struct sk_buff *skb);
struct sk_buff *kcmrs_skb_clone_window(struct sk_buff *skb, unsigned int start, unsigned int len,
				       bool atomic);
struct sk_buff *kcmrs_skb_chain_start(struct sk_buff *skb, unsigned int start, bool atomic);
int kcmrs_skb_chain_extend(struct sk_buff *chain, struct sk_buff *skb, unsigned int used,
			   bool atomic);
struct sk_buff *kcmrs_skb_peek(struct sk_buff_head *queue);
struct sk_buff *kcmrs_skb_dequeue(struct sk_buff_head *queue);
void kcmrs_skb_set_owner_r(struct sk_buff *skb, struct sock *sk);
void kcmrs_skb_orphan(struct sk_buff *skb);
void kcmrs_kfree_skb(struct sk_buff *skb);
size_t kcmrs_copy_from_iter(void *dst, size_t len, struct iov_iter *from);
size_t kcmrs_msg_data_left(const struct msghdr *msg);

/* /proc/net/kcm and /proc/net/kcm_stats of a namespace. */
int kcmrs_proc_create(struct net *net, int (*show_kcm)(struct seq_file *, void *),
		      int (*show_stats)(struct seq_file *, void *));
void kcmrs_proc_remove(struct net *net);
struct net *kcmrs_seq_file_single_net(struct seq_file *seq);
int kcmrs_sk_receive_qlen(struct sock *sk);
int kcmrs_sk_write_qlen(struct sock *sk);
int kcmrs_sk_wmem_alloc(struct sock *sk);

/* Waits for send space on a stream socket (sk_stream_wait_memory under its lock). */
int kcmrs_sk_stream_wait_space(struct sock *sk, long *timeo);
int kcmrs_sk_stream_wspace(const struct sock *sk);
int kcmrs_sk_sndbuf(const struct sock *sk);
int kcmrs_sk_wmem_queued(const struct sock *sk);
bool kcmrs_fatal_signal_pending(void);

/* splice() out of a KCM socket. */
ssize_t kcmrs_skb_splice(struct sk_buff *skb, struct sock *sk, unsigned int offset,
			 struct pipe_inode_info *pipe, unsigned int len, unsigned int flags);
bool kcmrs_socket_nonblocking(struct socket *sock);

/* A workqueue of kcm-rs's own: module exit drains it. */
struct workqueue_struct *kcmrs_alloc_workqueue(void);

#endif /* KCM_RS_H */
