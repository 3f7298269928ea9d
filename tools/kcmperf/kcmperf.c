// SPDX-License-Identifier: GPL-2.0
/*
 * kcmperf: throughput of an AF_KCM provider, and of plain TCP with user-space
 * framing as the baseline, over loopback.
 *
 *   kcmperf -p rs|c|user [-T tcp|mptcp|tls] [options] MODE...
 *
 * MODE is rr, stream-recv, stream-send or all. Every message is a 4-byte
 * big-endian payload length followed by the payload; "size" is the payload
 * size. The KCM providers (rs: kcm_rs.ko, c: the in-tree kcm.ko; the name is
 * a label, checked against /proc/modules) frame with a BPF socket-filter
 * parser that returns 4 + the length read at offset 0 of the message.
 *
 * -T chooses the transport of every connection, the attached ones and the
 * baseline's alike: tcp (default); mptcp, Multipath TCP (IPPROTO_MPTCP; over
 * loopback one subflow; a connection that falls back to TCP is an error); or
 * tls, TCP with kernel TLS (TLS 1.3, AES-GCM-128) in both directions, put on
 * both ends right after the connection is made, before it is attached or
 * used, with fixed keys mirrored on the peer. Over tls the baseline and the
 * peers read and write plaintext through the kTLS sockets. The in-tree
 * kcm.ko takes neither (it refuses MPTCP and parses kTLS ciphertext): -p c
 * runs over tcp only.
 *
 *   rr           T threads on clones of one multiplexor over C connections
 *                to an echo peer (user-space threads, one per connection,
 *                that deframe and echo whole messages). Each thread sends a
 *                request and waits for a reply (any reply: KCM steers it to
 *                any waiting thread). Baseline: T threads, each with its own
 *                connection, writing a frame and reading the reply with a
 *                buffered framing reader.
 *   stream-recv  a peer writes messages back to back as fast as it can (one
 *                large buffer of frames per write); one thread receives them
 *                from a KCM socket with recv (one message per call) or
 *                recvmmsg (a batch per call). Baseline ("stream", shared
 *                with stream-send): the same writer, and a reader that reads
 *                into one large buffer and deframes in place.
 *   stream-send  one thread sends messages on a KCM socket with send or
 *                sendmmsg; a peer reader (the baseline's reader) deframes,
 *                checks and counts them.
 *
 * Every received message is checked: its length, and three payload bytes
 * (payload byte i is tag + i, tag being the first payload byte). A wrong one
 * stops the measurement with status "misframed"; no progress for the stall
 * time (-S), also right after the counted window, or a KCM send blocked that
 * long, stops it with status "stall"; a request/response reply that does not
 * come after the window gives "lost"; anything else that fails gives "error".
 * Every blocking call has a timeout, so a provider that loses messages makes
 * a measurement fail, never hang. Each measurement has a warm-up (-w) and then
 * counts the messages of a fixed duration (-d).
 *
 * Output: one line per measurement, tab-separated, starting with KCMPERF:
 *   KCMPERF provider round mode method size threads conns status
 *           rate(msg/s) MB/s(payload, 10^6) messages seconds busy-cpus detail
 * provider is rs, c or user over tcp, and rs+mptcp, user+tls, ... over the
 * other transports.
 * rate is transactions/s for rr. busy-cpus is the system-wide busy CPU time
 * per second of the window (from /proc/stat), which includes the kernel's
 * work items and softirqs. Lines starting with # are comments.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/kcm.h>

#include "ktls_demo_keys.h"

#ifndef AF_KCM
#define AF_KCM 41
#endif
#ifndef SOL_KCM
#define SOL_KCM 281
#endif
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif
#ifndef SOL_MPTCP
#define SOL_MPTCP 284
#endif
#ifndef MPTCP_INFO
#define MPTCP_INFO 1
#endif

#define MAX_THREADS 64
#define MAX_CONNS 64
#define MAX_SIZES 16
#define MAX_BATCH 256
#define HDR 4
/* Bytes of frames per write of the stream writer (whole frames, at least 4). */
#define BLOCK_BYTES (256 * 1024)
/*
 * Receive timeout of all sockets and send timeout of the connections: how
 * often a blocked thread looks at the stop flags. A KCM send that blocks for
 * the stall time (-S) is a stall: nothing but the measured peer can unblock
 * it.
 */
#define POLL_MS 200

enum status { ST_OK, ST_MISFRAMED, ST_STALL, ST_LOST, ST_ERROR };
static const char *const status_name[] = { "ok", "misframed", "stall", "lost", "error" };

enum phase { RUN, STOP, ABORT };

enum transport { TR_TCP, TR_MPTCP, TR_TLS };
static const char *const transport_name[] = { "tcp", "mptcp", "tls" };

/* Options. */
static const char *provider = "rs";
static char label[32];		/* provider, or provider+transport, for the output */
static int transport = TR_TCP;
static int use_kcm = 1;
static double opt_duration = 2.0, opt_warmup = 0.3, opt_stall = 3.0;
static int opt_round = 1, opt_rr_conns = 4, opt_stream_conns = 1, opt_batch = 32;
static size_t rr_sizes[MAX_SIZES] = { 1, 100, 16384 }, stream_sizes[MAX_SIZES] = { 64, 4096, 65536 };
static int n_rr_sizes = 3, n_stream_sizes = 3;
static int rr_threads[MAX_SIZES] = { 1, 4, 16 }, n_rr_threads = 3;
static int bpf_prog = -1;

/* State of the measurement in progress. */
static int phase;		/* of the measured threads */
static int peer_stop;		/* of the peers (echo servers, writers, readers of stream-send) */
static int status;
static char detail[160];
static pthread_mutex_t status_lock = PTHREAD_MUTEX_INITIALIZER;

struct counter {
	unsigned long n;
} __attribute__((aligned(64)));
static struct counter counters[MAX_THREADS + MAX_CONNS];

static int load_phase(void)
{
	return __atomic_load_n(&phase, __ATOMIC_RELAXED);
}

static int peers_stopped(void)
{
	return __atomic_load_n(&peer_stop, __ATOMIC_RELAXED);
}

static void count(int slot, unsigned long n)
{
	__atomic_store_n(&counters[slot].n, counters[slot].n + n, __ATOMIC_RELAXED);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Records the first failure of a measurement and stops it. */
static void fail(int st, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&status_lock);
	if (status == ST_OK) {
		status = st;
		va_start(ap, fmt);
		vsnprintf(detail, sizeof(detail), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&status_lock);
	__atomic_store_n(&phase, ABORT, __ATOMIC_RELAXED);
}

static void die(const char *what)
{
	fprintf(stderr, "kcmperf: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* ---- Frames ---- */

static void make_frame(unsigned char *f, size_t size, unsigned char tag)
{
	uint32_t be = htonl(size);

	memcpy(f, &be, HDR);
	for (size_t i = 0; i < size; i++)
		f[HDR + i] = (unsigned char)(tag + i);
}

static uint32_t frame_len(const unsigned char *f)
{
	uint32_t be;

	memcpy(&be, f, HDR);
	return ntohl(be);
}

/* A whole frame of @len bytes: 1 when it is a well-formed frame of @size payload bytes. */
static int frame_ok(const unsigned char *f, size_t len, size_t size)
{
	const unsigned char *p = f + HDR;
	unsigned char tag;

	if (len != size + HDR || frame_len(f) != size)
		return 0;
	if (!size)
		return 1;
	tag = p[0];
	return p[size / 2] == (unsigned char)(tag + size / 2) &&
	       p[size - 1] == (unsigned char)(tag + size - 1);
}

/* Back-to-back frames of @size, whole, at least BLOCK_BYTES and 4 frames. */
static unsigned char *make_block(size_t size, size_t *frames, size_t *bytes)
{
	size_t flen = size + HDR, n = BLOCK_BYTES / flen;
	unsigned char *b;

	if (n < 4)
		n = 4;
	b = malloc(n * flen);
	if (!b)
		die("malloc");
	for (size_t i = 0; i < n; i++)
		make_frame(b + i * flen, size, (unsigned char)(i * 37 + 11));
	*frames = n;
	*bytes = n * flen;
	return b;
}

/* ---- Sockets ---- */

static struct timeval timeval_of(double secs)
{
	return (struct timeval){ .tv_sec = (time_t)secs,
				 .tv_usec = (suseconds_t)((secs - (time_t)secs) * 1e6) };
}

static void set_timeouts(int fd, double send_secs)
{
	struct timeval rcv = timeval_of(POLL_MS / 1000.0), snd = timeval_of(send_secs);

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd)))
		die("SO_RCVTIMEO/SO_SNDTIMEO");
}

/* An MPTCP connection that fell back to plain TCP would measure TCP under the MPTCP label. */
static void check_mptcp(int fd)
{
	socklen_t len = 0;

	/* MPTCP_INFO with length 0: 0 while MPTCP is in use, an error after a fallback. */
	if (getsockopt(fd, SOL_MPTCP, MPTCP_INFO, NULL, &len))
		die("MPTCP_INFO (fell back to TCP?)");
}

/*
 * @n connected loopback pairs of the transport: cli[i] connected to srv[i],
 * TCP_NODELAY, timeouts, and over tls kernel TLS on both ends.
 */
static void conn_pairs(int n, int *cli, int *srv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int proto = transport == TR_MPTCP ? IPPROTO_MPTCP : 0;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, proto), one = 1;

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, len) || listen(lfd, MAX_CONNS) ||
	    getsockname(lfd, (struct sockaddr *)&a, &len))
		die("listen");
	for (int i = 0; i < n; i++) {
		cli[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, proto);
		if (cli[i] < 0 || connect(cli[i], (struct sockaddr *)&a, len))
			die("connect");
		srv[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (srv[i] < 0)
			die("accept");
		setsockopt(cli[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		set_timeouts(cli[i], POLL_MS / 1000.0);
		set_timeouts(srv[i], POLL_MS / 1000.0);
		if (transport == TR_MPTCP) {
			check_mptcp(cli[i]);
			check_mptcp(srv[i]);
		} else if (transport == TR_TLS) {
			/* Fixed keys: every connection has the same ones. */
			if (ktls_demo_on(cli[i], 1) || ktls_demo_on(srv[i], 0))
				die("kernel TLS (TCP_ULP, TLS_TX, TLS_RX)");
		}
	}
	close(lfd);
}

/*
 * The parser, as raw BPF instructions: r6 = skb, r0 = big-endian u32 at
 * offset 0 (the program ends with 0, "need more", when there are fewer than 4
 * bytes), r0 += 4, return r0.
 */
static int load_parser(void)
{
	struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = BPF_REG_6, .src_reg = BPF_REG_1 },
		{ .code = BPF_LD | BPF_ABS | BPF_W, .imm = 0 },
		{ .code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = BPF_REG_0, .imm = HDR },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (unsigned long)prog;
	attr.insn_cnt = sizeof(prog) / sizeof(prog[0]);
	attr.license = (unsigned long)"GPL";
	return syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
}

/* A multiplexor with @n connected sockets attached; returns its first KCM socket. */
static int kcm_mux(const int *fds, int n)
{
	int mux = socket(AF_KCM, SOCK_DGRAM | SOCK_CLOEXEC, KCMPROTO_CONNECTED);

	if (mux < 0)
		die("socket(AF_KCM)");
	for (int i = 0; i < n; i++) {
		struct kcm_attach a = { .fd = fds[i], .bpf_fd = bpf_prog };

		if (ioctl(mux, SIOCKCMATTACH, &a))
			die("SIOCKCMATTACH");
	}
	set_timeouts(mux, opt_stall);
	return mux;
}

static int kcm_clone_of(int mux)
{
	struct kcm_clone c = { .fd = -1 };

	if (ioctl(mux, SIOCKCMCLONE, &c))
		die("SIOCKCMCLONE");
	set_timeouts(c.fd, opt_stall);
	return c.fd;
}

static int retry(int err)
{
	return err == EAGAIN || err == EINTR;
}

/* Writes all of @len unless @stop says to give up; 0 when all was written. */
static int write_all(int fd, const unsigned char *p, size_t len, int (*stop)(void))
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (retry(errno) && !stop())
				continue;
			return -1;
		}
		p += n;
		len -= n;
	}
	return 0;
}

static int measured_stopped(void)
{
	return load_phase() != RUN;
}

static int aborted(void)
{
	return load_phase() == ABORT;
}

/* ---- Peers and baseline threads ---- */

struct worker {
	pthread_t th;
	int fd, slot;
	size_t size;
	const unsigned char *block;	/* writers: frames to write */
	size_t block_bytes, block_frames;
	int measured;			/* counts for the measurement, stops with phase */
};

/*
 * The echo peer of rr: reads into one buffer, writes back all whole frames
 * it holds in one write, keeps the rest. Stops on EOF or when told.
 */
static void *echo_peer(void *arg)
{
	struct worker *w = arg;
	size_t cap = 4 * (w->size + HDR) + 65536, have = 0;
	unsigned char *buf = malloc(cap);

	if (!buf)
		die("malloc");
	while (!peers_stopped()) {
		ssize_t n = read(w->fd, buf + have, cap - have);
		size_t off = 0;

		if (n < 0 && retry(errno))
			continue;
		if (n <= 0)
			break;
		have += n;
		while (have - off >= HDR) {
			size_t flen = frame_len(buf + off) + HDR;

			if (flen != w->size + HDR) {
				fail(ST_MISFRAMED, "echo peer: request of %zu bytes, expected %zu",
				     flen, w->size + HDR);
				goto out;
			}
			if (have - off < flen)
				break;
			off += flen;
		}
		if (off && write_all(w->fd, buf, off, peers_stopped))
			break;
		memmove(buf, buf + off, have - off);
		have -= off;
	}
out:
	free(buf);
	return NULL;
}

/*
 * The tight framing reader: one large buffer, frames checked in place, one
 * counter update per read. Measured (baseline, stream-send peer).
 */
static void *stream_reader(void *arg)
{
	struct worker *w = arg;
	size_t flen = w->size + HDR, cap = 1 << 20, have = 0;
	unsigned char *buf;

	if (cap < 4 * flen)
		cap = 4 * flen;
	buf = malloc(cap);
	if (!buf)
		die("malloc");
	/* Runs until the peers stop, after the measured senders are done. */
	while (!peers_stopped() && !aborted()) {
		ssize_t n = read(w->fd, buf + have, cap - have);
		size_t off = 0;
		unsigned long msgs = 0;

		if (n < 0 && retry(errno))
			continue;
		if (n <= 0) {
			if (!peers_stopped() && load_phase() == RUN)
				fail(ST_ERROR, "reader: %s", n ? strerror(errno) : "end of stream");
			break;
		}
		have += n;
		while (have - off >= HDR) {
			if (frame_len(buf + off) != w->size) {
				fail(ST_MISFRAMED, "reader: header says %u, expected %zu",
				     frame_len(buf + off), w->size);
				goto out;
			}
			if (have - off < flen)
				break;
			if (!frame_ok(buf + off, flen, w->size)) {
				fail(ST_MISFRAMED, "reader: bad payload");
				goto out;
			}
			off += flen;
			msgs++;
		}
		count(w->slot, msgs);
		memmove(buf, buf + off, have - off);
		have -= off;
	}
out:
	free(buf);
	return NULL;
}

/* The stream writer: whole blocks of frames, back to back. */
static void *stream_writer(void *arg)
{
	struct worker *w = arg;
	int (*stop)(void) = w->measured ? measured_stopped : peers_stopped;

	while (!stop() && !aborted())
		if (write_all(w->fd, w->block, w->block_bytes, stop)) {
			if (!stop() && !aborted())
				fail(ST_ERROR, "writer: %s", strerror(errno));
			break;
		}
	return NULL;
}

/* rr baseline: one connection per thread, write a frame, read the reply. */
static void *rr_user_client(void *arg)
{
	struct worker *w = arg;
	size_t flen = w->size + HDR, cap = flen + 65536;
	unsigned char *req = malloc(flen), *buf = malloc(cap);
	double since;

	if (!req || !buf)
		die("malloc");
	make_frame(req, w->size, (unsigned char)(w->slot * 13 + 5));
	while (load_phase() == RUN) {
		size_t have = 0;

		if (write_all(w->fd, req, flen, aborted)) {
			if (!aborted())
				fail(ST_ERROR, "rr write: %s", strerror(errno));
			break;
		}
		since = now();
		while (have < flen) {
			ssize_t n = read(w->fd, buf + have, cap - have);

			if (n < 0 && retry(errno)) {
				if (aborted())
					goto out;
				if (now() - since > opt_stall) {
					fail(load_phase() == RUN ? ST_STALL : ST_LOST, "rr: no reply");
					goto out;
				}
				continue;
			}
			if (n <= 0) {
				fail(ST_ERROR, "rr read: %s", n ? strerror(errno) : "end of stream");
				goto out;
			}
			have += n;
			if (have >= HDR && frame_len(buf) != w->size) {
				fail(ST_MISFRAMED, "rr: reply header says %u", frame_len(buf));
				goto out;
			}
		}
		if (have != flen || !frame_ok(buf, flen, w->size)) {
			fail(ST_MISFRAMED, "rr: bad reply");
			break;
		}
		count(w->slot, 1);
	}
out:
	free(req);
	free(buf);
	return NULL;
}

/* ---- KCM threads ---- */

/* rr over KCM: send a request, wait for a reply (any thread's). */
static void *rr_kcm_client(void *arg)
{
	struct worker *w = arg;
	size_t flen = w->size + HDR, cap = flen + 64;
	unsigned char *req = malloc(flen), *buf = malloc(cap);
	int one = 1;

	if (!req || !buf)
		die("malloc");
	make_frame(req, w->size, (unsigned char)(w->slot * 13 + 5));
	while (load_phase() == RUN) {
		ssize_t n = send(w->fd, req, flen, 0);
		double since;

		if (n < 0 && errno == EINTR)
			continue;	/* nothing was sent */
		if (n < 0 && errno == EAGAIN) {
			fail(ST_STALL, "rr: send blocked for %.1f s (SO_SNDTIMEO)", opt_stall);
			break;
		}
		if (n != (ssize_t)flen) {
			fail(ST_ERROR, "rr send: %s", n < 0 ? strerror(errno) : "short send");
			break;
		}
		/* Sent: a reply is owed to some thread, so wait for one also after STOP. */
		since = now();
		for (;;) {
			n = recv(w->fd, buf, cap, 0);
			if (n >= 0 || !retry(errno) || aborted())
				break;
			if (now() - since > opt_stall) {
				fail(load_phase() == RUN ? ST_STALL : ST_LOST, "rr: no reply for %.1f s",
				     opt_stall);
				break;
			}
		}
		if (n < 0) {
			if (!aborted())
				fail(ST_ERROR, "rr recv: %s", strerror(errno));
			break;
		}
		if (!frame_ok(buf, n, w->size)) {
			fail(ST_MISFRAMED, "rr: reply of %zd bytes (header %u), expected %zu", n,
			     n >= HDR ? frame_len(buf) : 0, flen);
			break;
		}
		count(w->slot, 1);
	}
	/* Replies steered here from now on go to the threads still waiting. */
	setsockopt(w->fd, SOL_KCM, KCM_RECV_DISABLE, &one, sizeof(one));
	free(req);
	free(buf);
	return NULL;
}

static int recv_mmsg;	/* stream-recv/-send with recvmmsg/sendmmsg */

static void *kcm_receiver(void *arg)
{
	struct worker *w = arg;
	size_t flen = w->size + HDR, cap = flen + 64;
	int batch = recv_mmsg ? opt_batch : 1;
	unsigned char *bufs = malloc(cap * batch);
	struct mmsghdr msgs[MAX_BATCH];
	struct iovec iov[MAX_BATCH];

	if (!bufs)
		die("malloc");
	for (int i = 0; i < batch; i++) {
		iov[i] = (struct iovec){ .iov_base = bufs + i * cap, .iov_len = cap };
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
	}
	while (load_phase() == RUN) {
		int got;

		if (recv_mmsg) {
			got = recvmmsg(w->fd, msgs, batch, MSG_WAITFORONE, NULL);
		} else {
			ssize_t n = recv(w->fd, bufs, cap, 0);

			msgs[0].msg_len = n;
			msgs[0].msg_hdr.msg_flags = 0;
			got = n < 0 ? -1 : 1;
		}
		if (got < 0) {
			if (retry(errno))
				continue;
			fail(ST_ERROR, "%s: %s", recv_mmsg ? "recvmmsg" : "recv", strerror(errno));
			break;
		}
		for (int i = 0; i < got; i++) {
			unsigned char *m = bufs + i * cap;

			if ((msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ||
			    !frame_ok(m, msgs[i].msg_len, w->size)) {
				fail(ST_MISFRAMED, "received a message of %u bytes (header %u), expected %zu",
				     msgs[i].msg_len, msgs[i].msg_len >= HDR ? frame_len(m) : 0, flen);
				goto out;
			}
		}
		count(w->slot, got);
	}
out:
	free(bufs);
	return NULL;
}

static void *kcm_sender(void *arg)
{
	struct worker *w = arg;
	size_t flen = w->size + HDR, next = 0;
	int batch = recv_mmsg ? opt_batch : 1;
	struct mmsghdr msgs[MAX_BATCH];
	struct iovec iov[MAX_BATCH];

	while (load_phase() == RUN) {
		int sent;

		if (recv_mmsg) {
			for (int i = 0; i < batch; i++) {
				size_t f = (next + i) % w->block_frames;

				iov[i] = (struct iovec){ .iov_base = (void *)(w->block + f * flen),
							 .iov_len = flen };
				msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
			}
			sent = sendmmsg(w->fd, msgs, batch, 0);
			for (int i = 0; i < sent; i++)
				if (msgs[i].msg_len != flen) {
					fail(ST_ERROR, "sendmmsg: short send");
					return NULL;
				}
		} else {
			ssize_t n = send(w->fd, w->block + next * flen, flen, 0);

			if (n >= 0 && n != (ssize_t)flen) {
				fail(ST_ERROR, "send: short send");
				break;
			}
			sent = n < 0 ? -1 : 1;
		}
		if (sent < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				fail(ST_STALL, "%s blocked for %.1f s (SO_SNDTIMEO)",
				     recv_mmsg ? "sendmmsg" : "send", opt_stall);
				break;
			}
			fail(ST_ERROR, "%s: %s", recv_mmsg ? "sendmmsg" : "send", strerror(errno));
			break;
		}
		next = (next + sent) % w->block_frames;
	}
	return NULL;
}

/* ---- Measurement ---- */

/* System-wide busy and total jiffies. */
static void cpu_times(unsigned long long *busy, unsigned long long *total)
{
	unsigned long long v[10] = { 0 };
	FILE *f = fopen("/proc/stat", "r");

	*busy = *total = 0;
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 4) {
		for (int i = 0; i < 8; i++)	/* guest times are included in user/nice */
			*total += v[i];
		*busy = *total - v[3] - v[4];
	}
	fclose(f);
}

static unsigned long counted(int nslots)
{
	unsigned long c = 0;

	for (int i = 0; i < nslots; i++)
		c += __atomic_load_n(&counters[i].n, __ATOMIC_RELAXED);
	return c;
}

struct result {
	unsigned long msgs;
	double secs, cpus;
};

/* Warm-up, then the counted window; ends with phase STOP (or ABORT on failure). */
static void measure(int nslots, struct result *r)
{
	double start = now(), last_change = start, t0 = 0;
	unsigned long last = 0, c0 = 0;
	unsigned long long b0 = 0, j0 = 0, b1, j1;
	int counting = 0;

	r->msgs = 0;
	r->secs = 0;
	r->cpus = 0;
	for (;;) {
		double t;
		unsigned long c;

		usleep(10000);
		t = now();
		c = counted(nslots);
		if (aborted())
			return;
		if (counting) {
			/* What was counted so far, for the record when this ends in a failure. */
			r->msgs = c - c0;
			r->secs = t - t0;
		}
		if (c != last) {
			last = c;
			last_change = t;
		} else if (t - last_change > opt_stall) {
			fail(ST_STALL, "no message for %.1f s (after %lu)", opt_stall, c);
			return;
		}
		if (!counting && t - start >= opt_warmup) {
			counting = 1;
			t0 = t;
			c0 = c;
			cpu_times(&b0, &j0);
		} else if (counting && t - t0 >= opt_duration) {
			cpu_times(&b1, &j1);
			r->msgs = c - c0;
			r->secs = t - t0;
			if (j1 > j0)
				r->cpus = (double)(b1 - b0) / (j1 - j0) * sysconf(_SC_NPROCESSORS_ONLN);
			/* A stall that began in the window: there must be progress after it. */
			while (counted(nslots) == last) {
				if (aborted())
					return;
				if (now() - last_change > opt_stall) {
					fail(ST_STALL, "no message for %.1f s (after %lu)", opt_stall, last);
					return;
				}
				usleep(10000);
			}
			__atomic_store_n(&phase, STOP, __ATOMIC_RELAXED);
			return;
		}
	}
}

static void start(struct worker *w, void *(*fn)(void *))
{
	if (pthread_create(&w->th, NULL, fn, w))
		die("pthread_create");
}

static char current[96];	/* the measurement in progress, for the watchdog */

static void watchdog(int sig)
{
	char msg[160];
	int n = snprintf(msg, sizeof(msg), "# kcmperf: %s did not finish, giving up\n", current);

	(void)sig;
	if (write(STDOUT_FILENO, msg, n) < 0 || write(STDERR_FILENO, msg, n) < 0)
		_exit(3);
	_exit(3);
}

static void reset(const char *mode, size_t size, int threads)
{
	snprintf(current, sizeof(current), "%s %s size %zu threads %d", label, mode, size, threads);
	/* Every blocking call wakes up within POLL_MS: this only catches a hang. */
	alarm((unsigned int)(opt_warmup + opt_duration + 3 * opt_stall) + 30);
	memset(counters, 0, sizeof(counters));
	phase = RUN;
	peer_stop = 0;
	status = ST_OK;
	detail[0] = 0;
}

static void report(const char *mode, const char *method, size_t size, int threads, int conns,
		   const struct result *r)
{
	double rate = r->secs > 0 ? r->msgs / r->secs : 0;

	if (status != ST_OK)
		rate = 0;
	printf("KCMPERF\t%s\t%d\t%s\t%s\t%zu\t%d\t%d\t%s\t%.1f\t%.3f\t%lu\t%.3f\t%.2f\t%s\n", label,
	       opt_round, mode, method, size, threads, conns, status_name[status], rate,
	       rate * size / 1e6, r->msgs, r->secs, r->cpus, detail[0] ? detail : "-");
	fflush(stdout);
	alarm(0);
}

/* Ends a measurement: measured threads first, then the peers, then the sockets. */
static void finish(struct worker *measured, int nm, struct worker *peers, int np, int *fds, int nfds)
{
	if (load_phase() == RUN)
		__atomic_store_n(&phase, STOP, __ATOMIC_RELAXED);
	for (int i = 0; i < nm; i++)
		pthread_join(measured[i].th, NULL);
	__atomic_store_n(&peer_stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < np; i++)
		shutdown(peers[i].fd, SHUT_RDWR);
	for (int i = 0; i < np; i++)
		pthread_join(peers[i].th, NULL);
	for (int i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void bench_rr(size_t size, int threads, int conns)
{
	struct worker cl[MAX_THREADS], echo[MAX_THREADS];
	int cli[MAX_THREADS], srv[MAX_THREADS], fds[3 * MAX_THREADS], nfds = 0;
	struct result r;

	reset("rr", size, threads);
	if (!use_kcm)
		conns = threads;	/* the baseline: a connection per thread */
	conn_pairs(conns, cli, srv);
	for (int i = 0; i < conns; i++) {
		echo[i] = (struct worker){ .fd = srv[i], .size = size };
		start(&echo[i], echo_peer);
	}
	if (use_kcm) {
		int mux = kcm_mux(cli, conns);

		for (int t = 0; t < threads; t++) {
			cl[t] = (struct worker){ .fd = t ? kcm_clone_of(mux) : mux, .slot = t, .size = size };
			fds[nfds++] = cl[t].fd;
		}
	} else {
		for (int t = 0; t < threads; t++)
			cl[t] = (struct worker){ .fd = cli[t], .slot = t, .size = size };
	}
	for (int i = 0; i < conns; i++) {
		fds[nfds++] = cli[i];
		fds[nfds++] = srv[i];
	}
	for (int t = 0; t < threads; t++)
		start(&cl[t], use_kcm ? rr_kcm_client : rr_user_client);
	measure(threads, &r);
	finish(cl, threads, echo, conns, fds, nfds);
	report("rr", use_kcm ? "kcm" : "user", size, threads, conns, &r);
}

/* stream-recv (@send 0) or stream-send (@send 1) over KCM. */
static void bench_stream_kcm(int send_side, int mmsg, size_t size, int conns)
{
	struct worker kw, peers[MAX_CONNS];
	int cli[MAX_CONNS], srv[MAX_CONNS], fds[2 * MAX_CONNS + 1], nfds = 0;
	size_t frames, bytes;
	unsigned char *block = make_block(size, &frames, &bytes);
	struct result r;

	reset(send_side ? (mmsg ? "stream-send sendmmsg" : "stream-send send")
			: (mmsg ? "stream-recv recvmmsg" : "stream-recv recv"), size, 1);
	recv_mmsg = mmsg;
	conn_pairs(conns, cli, srv);
	kw = (struct worker){ .fd = kcm_mux(cli, conns), .slot = send_side ? conns : 0, .size = size,
			      .block = block, .block_bytes = bytes, .block_frames = frames };
	fds[nfds++] = kw.fd;
	for (int i = 0; i < conns; i++) {
		/* Peers: writers to the KCM side, or readers (counted) of what it sends. */
		peers[i] = (struct worker){ .fd = srv[i], .slot = send_side ? i : conns + i, .size = size,
					    .block = block, .block_bytes = bytes, .block_frames = frames };
		start(&peers[i], send_side ? stream_reader : stream_writer);
		fds[nfds++] = cli[i];
		fds[nfds++] = srv[i];
	}
	start(&kw, send_side ? kcm_sender : kcm_receiver);
	measure(send_side ? conns : 1, &r);
	finish(&kw, 1, peers, conns, fds, nfds);
	report(send_side ? "stream-send" : "stream-recv",
	       send_side ? (mmsg ? "sendmmsg" : "send") : (mmsg ? "recvmmsg" : "recv"), size, 1, conns,
	       &r);
	free(block);
}

/* The baseline of both stream modes: block writer, tight framing reader, per connection. */
static void bench_stream_user(size_t size, int conns)
{
	struct worker readers[MAX_CONNS], writers[MAX_CONNS];
	int cli[MAX_CONNS], srv[MAX_CONNS], fds[2 * MAX_CONNS], nfds = 0;
	size_t frames, bytes;
	unsigned char *block = make_block(size, &frames, &bytes);
	struct result r;

	reset("stream", size, 1);
	conn_pairs(conns, cli, srv);
	for (int i = 0; i < conns; i++) {
		readers[i] = (struct worker){ .fd = cli[i], .slot = i, .size = size };
		writers[i] = (struct worker){ .fd = srv[i], .slot = conns + i, .size = size, .block = block,
					      .block_bytes = bytes, .block_frames = frames };
		start(&writers[i], stream_writer);
		start(&readers[i], stream_reader);
		fds[nfds++] = cli[i];
		fds[nfds++] = srv[i];
	}
	measure(conns, &r);
	/* The readers run until the peers stop: stop the writers (peers) with them. */
	finish(NULL, 0, writers, conns, NULL, 0);
	for (int i = 0; i < conns; i++)
		shutdown(readers[i].fd, SHUT_RDWR);
	for (int i = 0; i < conns; i++)
		pthread_join(readers[i].th, NULL);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	report("stream", "read/write", size, 1, conns, &r);
	free(block);
}

/* ---- Main ---- */

static int parse_list(const char *s, size_t *out)
{
	int n = 0;
	char *copy = strdup(s), *save = NULL;

	for (char *tok = strtok_r(copy, ",", &save); tok && n < MAX_SIZES;
	     tok = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long v = strtoul(tok, &end, 0);

		if (*end == 'k' || *end == 'K')
			v *= 1024, end++;
		if (*end) {
			fprintf(stderr, "kcmperf: bad number %s\n", tok);
			exit(2);
		}
		out[n++] = v;
	}
	free(copy);
	return n;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: kcmperf -p rs|c|user [options] rr|stream-recv|stream-send|all...\n"
		"  -T TRANS  transport of every connection: tcp (default), mptcp, or tls\n"
		"            (kernel TLS 1.3); -p c takes tcp only\n"
		"  -d SECS   counted duration of a measurement (default 2)\n"
		"  -w SECS   warm-up before counting (default 0.3)\n"
		"  -S SECS   no progress for this long: stall (default 3)\n"
		"  -r N      round number, for the output (default 1)\n"
		"  -c N      connections for rr over KCM (default 4)\n"
		"  -C N      connections for the stream modes (default 1)\n"
		"  -b N      recvmmsg/sendmmsg batch (default 32)\n"
		"  -s LIST   rr sizes (default 1,100,16384)\n"
		"  -m LIST   stream sizes (default 64,4096,65536)\n"
		"  -t LIST   rr thread counts (default 1,4,16)\n"
		"  -n        do not check /proc/modules for the provider's module\n");
	exit(2);
}

/* rs and c name a module that must be the one loaded, so results are not mislabelled. */
static void check_provider(void)
{
	const char *want = !strcmp(provider, "rs") ? "kcm_rs " : "kcm ";
	char line[256];
	FILE *f = fopen("/proc/modules", "r");
	int found = 0;

	if (!f)
		die("/proc/modules");
	while (fgets(line, sizeof(line), f))
		found |= !strncmp(line, want, strlen(want));
	fclose(f);
	if (!found) {
		fprintf(stderr, "kcmperf: provider %s but module %.*sis not loaded\n", provider,
			(int)strlen(want), want);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	int do_rr = 0, do_recv = 0, do_send = 0, check = 1, opt;
	size_t tmp[MAX_SIZES];

	while ((opt = getopt(argc, argv, "p:T:d:w:S:r:c:C:b:s:m:t:nh")) != -1) {
		switch (opt) {
		case 'p': provider = optarg; break;
		case 'T':
			for (transport = 0; transport <= TR_TLS; transport++)
				if (!strcmp(optarg, transport_name[transport]))
					break;
			if (transport > TR_TLS)
				usage();
			break;
		case 'd': opt_duration = atof(optarg); break;
		case 'w': opt_warmup = atof(optarg); break;
		case 'S': opt_stall = atof(optarg); break;
		case 'r': opt_round = atoi(optarg); break;
		case 'c': opt_rr_conns = atoi(optarg); break;
		case 'C': opt_stream_conns = atoi(optarg); break;
		case 'b': opt_batch = atoi(optarg); break;
		case 's': n_rr_sizes = parse_list(optarg, rr_sizes); break;
		case 'm': n_stream_sizes = parse_list(optarg, stream_sizes); break;
		case 't':
			n_rr_threads = parse_list(optarg, tmp);
			for (int i = 0; i < n_rr_threads; i++)
				rr_threads[i] = tmp[i];
			break;
		case 'n': check = 0; break;
		default: usage();
		}
	}
	if (strcmp(provider, "rs") && strcmp(provider, "c") && strcmp(provider, "user"))
		usage();
	use_kcm = strcmp(provider, "user") != 0;
	if (!strcmp(provider, "c") && transport != TR_TCP) {
		fprintf(stderr, "kcmperf: -p c runs over tcp only: kcm.ko %s\n",
			transport == TR_MPTCP ? "refuses MPTCP sockets" : "parses kTLS ciphertext");
		exit(2);
	}
	if (transport == TR_TCP)
		snprintf(label, sizeof(label), "%s", provider);
	else
		snprintf(label, sizeof(label), "%s+%s", provider, transport_name[transport]);
	if (optind >= argc || opt_duration <= 0 || opt_rr_conns < 1 || opt_rr_conns > MAX_CONNS ||
	    opt_stream_conns < 1 || opt_stream_conns > MAX_CONNS || opt_batch < 1 ||
	    opt_batch > MAX_BATCH)
		usage();
	for (int i = 0; i < n_rr_threads; i++)
		if (rr_threads[i] < 1 || rr_threads[i] > MAX_THREADS)
			usage();
	for (int i = optind; i < argc; i++) {
		if (!strcmp(argv[i], "rr"))
			do_rr = 1;
		else if (!strcmp(argv[i], "stream-recv"))
			do_recv = 1;
		else if (!strcmp(argv[i], "stream-send"))
			do_send = 1;
		else if (!strcmp(argv[i], "all"))
			do_rr = do_recv = do_send = 1;
		else
			usage();
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, watchdog);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (use_kcm) {
		if (check)
			check_provider();
		bpf_prog = load_parser();
		if (bpf_prog < 0)
			die("BPF_PROG_LOAD");
	}

	if (do_rr)
		for (int s = 0; s < n_rr_sizes; s++)
			for (int t = 0; t < n_rr_threads; t++)
				bench_rr(rr_sizes[s], rr_threads[t], opt_rr_conns);
	if (!use_kcm) {
		/* One baseline for both stream directions. */
		if (do_recv || do_send)
			for (int s = 0; s < n_stream_sizes; s++)
				bench_stream_user(stream_sizes[s], opt_stream_conns);
		return 0;
	}
	for (int side = 0; side < 2; side++) {
		if (!(side ? do_send : do_recv))
			continue;
		for (int s = 0; s < n_stream_sizes; s++)
			for (int mmsg = 0; mmsg < 2; mmsg++)
				bench_stream_kcm(side, mmsg, stream_sizes[s], opt_stream_conns);
	}
	return 0;
}
