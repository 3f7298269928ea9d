// SPDX-License-Identifier: GPL-2.0
/*
 * A seeded random-operation fuzzer for the AF_KCM API.
 *
 * A pool of objects (KCM sockets and their clones, TCP connections, BPF
 * parsers good and hostile, and sockets and files KCM must refuse) is driven
 * by random operations: socket, clone, close, attach and unattach of any
 * descriptor with any program, sends and receives of every kind (send,
 * sendmsg with many parts, sendmmsg, recv, recvmmsg, MSG_PEEK, MSG_TRUNC,
 * MSG_MORE, MSG_EOR, MSG_BATCH, splice), socket options and ioctls with
 * random and bad arguments, peers writing frames with random segmentation or
 * garbage, peers closing and resetting, poll, fcntl, and the socket calls
 * KCM does not support. User pointers are sometimes NULL, unmapped, or
 * straddle an unmapped page.
 *
 * Every call must return a result within its bounds or an errno from the set
 * the AF_KCM API documents for it; anything else fails the test and prints
 * the last operations. At the end every descriptor is closed and the
 * namespace must show no multiplexor left (nothing leaked); the VM's log
 * check catches any kernel report.
 *
 * single_thread: one thread; the sequence of operations depends only on the
 * seed, so KCM_FUZZ_SEED=<seed> replays it. threads: FUZZ_THREADS threads on
 * one shared pool (seeds seed+1, seed+2, ...); the interleaving is not
 * reproducible, the operations of each thread are. KCM_FUZZ_SECONDS bounds
 * each test (default 15). No call blocks for long: KCM sockets get 20 ms
 * SO_RCVTIMEO/SO_SNDTIMEO and peers are non-blocking.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/sockios.h>

#include "kselftest_harness.h"
#include "kcm_util.h"

#ifndef MSG_BATCH
#define MSG_BATCH 0x40000
#endif

#define NKCM 12
#define NTCP 6
#define NPROG 6
#define NMISC 4
#define FUZZ_THREADS 4
#define BUF_SIZE (256 * 1024)
#define TRACE 48

/*
 * The shared pool. KCM sockets and TCP connections live at fixed descriptor
 * numbers (KCM_FD + i, TCP_FD + 2 * i + end): a new one is moved there with
 * dup2, which closes what was there, and closing one leaves the number free.
 * The kernel hands out the lowest free number, far below these, so a slot's
 * number names that slot's object or nothing, even while other threads close
 * and open: every result can be checked against what the object's API allows.
 */
#define KCM_FD 200
#define TCP_FD 300

struct pool {
	int prog[NPROG];		/* fixed for the whole run */
	int misc[NMISC];		/* a pipe end, UDP, UNIX, a regular file */
	atomic_int stop;
	atomic_ulong ops;
	/* Calls that succeeded, to show the run reached the multiplexor's paths. */
	atomic_ulong attached, unattached, cloned, sent, received;
};

/* One thread's state: its random stream, buffers and recent operations. */
struct fuzzer {
	struct pool *pool;
	uint64_t rng;
	int pipe[2];			/* splice target, drained after each splice */
	unsigned char *buf;		/* followed by an unmapped page */
	char *bad;			/* that page: the kernel writes only to this thread's pages */
	char trace[TRACE][96];
	unsigned int ntrace;
	int current_op;			/* index in fuzz_ops, for a crash report */
	int attached_kcm, attached_fd;	/* this thread's last successful attach */
	char failure[256];
};

static uint64_t next_random(struct fuzzer *f)
{
	/* xorshift64*: small, fast and the same everywhere. */
	f->rng ^= f->rng >> 12;
	f->rng ^= f->rng << 25;
	f->rng ^= f->rng >> 27;
	return f->rng * 0x2545f4914f6cdd1dull;
}

static unsigned int below(struct fuzzer *f, unsigned int n)
{
	return n ? next_random(f) % n : 0;
}

static int one_in(struct fuzzer *f, unsigned int n)
{
	return below(f, n) == 0;
}

static void trace(struct fuzzer *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->trace[f->ntrace++ % TRACE], sizeof(f->trace[0]), fmt, ap);
	va_end(ap);
}

/* Records the first unexpected result; the thread stops at it. */
static void unexpected(struct fuzzer *f, const char *what, long ret, int err)
{
	if (f->failure[0])
		return;
	snprintf(f->failure, sizeof(f->failure), "%s returned %ld (errno %d %s)", what, ret, err,
		 strerror(err));
	atomic_store(&f->pool->stop, 1);
}

/* A result must be within [lo, hi], or -1 with one of the errnos listed (0-terminated). */
static void check(struct fuzzer *f, const char *what, long ret, long lo, long hi, ...)
{
	int err = errno, allowed;
	va_list ap;

	if (ret >= lo && ret <= hi)
		return;
	if (ret == -1) {
		va_start(ap, hi);
		while ((allowed = va_arg(ap, int)))
			if (allowed == err) {
				va_end(ap);
				return;
			}
		va_end(ap);
	}
	unexpected(f, what, ret, err);
}

/* errnos any call on a socket may give under load or with a bad descriptor */
#define COMMON EBADF, ENOTSOCK, EINTR, ENOMEM, ENOBUFS
/* errnos of a send: no room, too big, a broken or failing psock, bad arguments */
#define SEND_ERRNOS EAGAIN, EMSGSIZE, EPIPE, EFAULT, EINVAL, EOPNOTSUPP, ENOTCONN, ECONNRESET, \
	ETIMEDOUT, EHOSTUNREACH, COMMON

static int any_kcm(struct fuzzer *f)
{
	return KCM_FD + below(f, NKCM);
}

/* Connection @i's attachable end (0) or peer (1). */
static int tcp_fd(int i, int end)
{
	return TCP_FD + 2 * i + end;
}

/* Moves @fd to descriptor @slot, closing what was there. */
static void install(int fd, int slot)
{
	if (fd >= 0 && dup2(fd, slot) == slot)
		close(fd);
}

/* Any descriptor of the pool: mostly the kinds an operation expects. */
static int any_fd(struct fuzzer *f)
{
	struct pool *p = f->pool;

	switch (below(f, 8)) {
	case 0:
		return any_kcm(f);
	case 1:
		return p->misc[below(f, NMISC)];
	case 2:
		return p->prog[below(f, NPROG)];
	case 3:
		return tcp_fd(below(f, NTCP), 1);
	case 4:
		return (int)below(f, 64) - 1;
	default:
		return tcp_fd(below(f, NTCP), 0);
	}
}

static int any_prog(struct fuzzer *f)
{
	return one_in(f, 8) ? any_fd(f) : f->pool->prog[below(f, NPROG)];
}

/* A user pointer for @len bytes: valid, NULL, unmapped, or straddling the unmapped page. */
static void *user_ptr(struct fuzzer *f, size_t len)
{
	if (!one_in(f, 16))
		return f->buf + below(f, 64);
	switch (below(f, 3)) {
	case 0:
		return NULL;
	case 1:
		return f->bad;
	default:
		return f->bad - (len > 1 ? 1 + below(f, len - 1) : 1);
	}
}

static size_t random_len(struct fuzzer *f)
{
	switch (below(f, 6)) {
	case 0:
		return 0;
	case 1:
		return below(f, 16);
	case 2:
	case 3:
		return below(f, 2000);
	case 4:
		return below(f, 70000);
	default:
		return below(f, BUF_SIZE - 64);
	}
}

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_usec = 20000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void op_socket(struct fuzzer *f)
{
	static const int types[] = { SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM, SOCK_RAW };
	int type = types[one_in(f, 8) ? below(f, 4) : below(f, 2)];
	int proto = one_in(f, 8) ? (int)below(f, 3) : KCMPROTO_CONNECTED;
	int flags = (one_in(f, 2) ? SOCK_NONBLOCK : 0) | (one_in(f, 2) ? SOCK_CLOEXEC : 0);
	int fd = socket(AF_KCM, type | flags, proto);

	trace(f, "socket(KCM, %d|%#x, %d) = %d", type, flags, proto, fd);
	check(f, "socket", fd, 0, 1 << 20, ESOCKTNOSUPPORT, EPROTONOSUPPORT, EMFILE, ENFILE, COMMON, 0);
	if (fd < 0)
		return;
	set_timeouts(fd);
	install(fd, any_kcm(f));
}

static void op_clone(struct fuzzer *f)
{
	int kcm = any_kcm(f);
	struct kcm_clone *info = user_ptr(f, sizeof(*info));
	int ret = ioctl(kcm, SIOCKCMCLONE, info);

	trace(f, "clone(%d, %p) = %d", kcm, info, ret);
	if (ret == 0)
		atomic_fetch_add(&f->pool->cloned, 1);
	check(f, "SIOCKCMCLONE", ret, 0, 0, EFAULT, EMFILE, ENFILE, ENOTTY, EINVAL, COMMON, 0);
	if (ret == 0 && (char *)info >= (char *)f->buf && (char *)info < (char *)f->buf + 64) {
		set_timeouts(info->fd);
		install(info->fd, any_kcm(f));
	}
}

static void op_close_kcm(struct fuzzer *f)
{
	int fd = any_kcm(f);

	trace(f, "close kcm %d", fd);
	close(fd);
}

static void op_attach(struct fuzzer *f)
{
	int kcm = any_kcm(f), fd = any_fd(f), prog = any_prog(f), ret;
	struct kcm_attach *a = (struct kcm_attach *)f->buf;

	if (one_in(f, 16)) {
		a = user_ptr(f, sizeof(*a));
	} else {
		a->fd = fd;
		a->bpf_fd = prog;
	}
	ret = ioctl(kcm, SIOCKCMATTACH, a);
	trace(f, "attach(%d, fd %d, prog %d) = %d", kcm, fd, prog, ret);
	if (ret == 0) {
		atomic_fetch_add(&f->pool->attached, 1);
		f->attached_kcm = kcm;
		f->attached_fd = a->fd;
	}
	check(f, "SIOCKCMATTACH", ret, 0, 0, EFAULT, ENOENT, EINVAL, EBADF, EOPNOTSUPP, EALREADY,
	      ENOTTY, ENOTSOCK, COMMON, 0);
}

static void op_unattach(struct fuzzer *f)
{
	/* Often the last attach of this thread, which may still be in place. */
	int kcm = any_kcm(f), fd = any_fd(f), ret;
	struct kcm_unattach *u = (struct kcm_unattach *)f->buf;

	if (f->attached_kcm && one_in(f, 2)) {
		kcm = f->attached_kcm;
		fd = f->attached_fd;
	}

	if (one_in(f, 16)) {
		u = user_ptr(f, sizeof(*u));
	} else {
		u->fd = fd;
	}
	ret = ioctl(kcm, SIOCKCMUNATTACH, u);
	trace(f, "unattach(%d, fd %d) = %d", kcm, fd, ret);
	if (ret == 0)
		atomic_fetch_add(&f->pool->unattached, 1);
	/* EALREADY: net/kcm, while another unattach of the socket is under way. */
	check(f, "SIOCKCMUNATTACH", ret, 0, 0, EFAULT, ENOENT, EINVAL, ENOTTY, EOPNOTSUPP, EALREADY,
	      COMMON, 0);
}

static void op_tcp(struct fuzzer *f)
{
	int i = below(f, NTCP), end = below(f, 2), fds[2], fd;

	switch (below(f, 4)) {
	case 0:
	case 1: /* a new connection in a slot */
		if (tcp_pair(one_in(f, 2) ? AF_INET : AF_INET6, fds))
			return;
		fcntl(fds[1], F_SETFL, O_NONBLOCK);
		if (one_in(f, 4))
			fcntl(fds[0], F_SETFL, O_NONBLOCK);
		trace(f, "tcp pair %d: %d %d", i, fds[0], fds[1]);
		for (int e = 0; e < 2; e++)
			install(fds[e], tcp_fd(i, e));
		break;
	case 2: /* close one end (with a reset sometimes) */
		fd = tcp_fd(i, end);
		if (one_in(f, 2)) {
			struct linger l = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		}
		trace(f, "close tcp %d end %d (%d)", i, end, fd);
		close(fd);
		break;
	default:
		fd = tcp_fd(i, end);
		trace(f, "shutdown tcp %d end %d (%d)", i, end, fd);
		shutdown(fd, one_in(f, 2) ? SHUT_WR : SHUT_RDWR);
		break;
	}
}

/* The peer writes frames (4-byte length + payload), cut at random, or garbage. */
static void op_peer_write(struct fuzzer *f)
{
	int fd = tcp_fd(below(f, NTCP), 1);
	size_t len = 0, frames = 1 + below(f, 6);

	if (one_in(f, 8)) {
		len = random_len(f);
		for (size_t i = 0; i < len; i++)
			f->buf[i] = next_random(f);
	} else {
		for (size_t i = 0; i < frames && len < BUF_SIZE - 70000; i++)
			len += make_frame(f->buf + len, below(f, 1000),
					  one_in(f, 4) ? below(f, 66000) : below(f, 300));
	}
	trace(f, "peer write %d: %zu bytes", fd, len);
	for (size_t off = 0; off < len;) {
		size_t chunk = one_in(f, 2) ? len - off : 1 + below(f, len - off);
		ssize_t n = write(fd, f->buf + off, chunk);

		if (n <= 0)
			break;
		off += n;
	}
}

static void op_peer_read(struct fuzzer *f)
{
	int fd = tcp_fd(below(f, NTCP), 1);
	ssize_t n;

	do
		n = recv(fd, f->buf, BUF_SIZE, MSG_DONTWAIT);
	while (n > 0);
	trace(f, "peer drain %d", fd);
}

/* A flag and the odds (one in n) that a call gets it. */
struct flag_odds {
	int flag;
	unsigned int one_in;
};

/* Flags drawn from @table (ended by a zero flag), and now and then any other bit. */
static int random_flags(struct fuzzer *f, const struct flag_odds *table)
{
	int flags = 0;

	for (; table->flag; table++)
		if (one_in(f, table->one_in))
			flags |= table->flag;
	if (one_in(f, 16))
		flags |= 1 << below(f, 31);
	return flags;
}

static int send_flags(struct fuzzer *f)
{
	static const struct flag_odds odds[] = {
		{ MSG_DONTWAIT, 2 }, { MSG_MORE, 3 }, { MSG_EOR, 3 }, { MSG_BATCH, 8 }, { 0, 0 },
	};

	return random_flags(f, odds);
}


/* Fills @iov with @n parts of f->buf (some parts bad pointers); returns the total length. */
static size_t random_iov(struct fuzzer *f, struct iovec *iov, int n, size_t limit)
{
	size_t total = 0;

	for (int i = 0; i < n; i++) {
		size_t len = random_len(f) / n;

		if (total + len > limit)
			len = limit - total;
		iov[i].iov_len = len;
		iov[i].iov_base = user_ptr(f, len);
		total += len;
	}
	return total;
}

/* @n messages of one part each, at random places of f->buf (some bad pointers). */
static void random_mmsg(struct fuzzer *f, struct mmsghdr *mm, struct iovec *iov, int n)
{
	memset(mm, 0, n * sizeof(*mm));
	for (int i = 0; i < n; i++) {
		random_iov(f, &iov[i], 1, 70000);
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
	}
}

static void op_send(struct fuzzer *f)
{
	int kcm = any_kcm(f), flags = send_flags(f), n = one_in(f, 3) ? 1 + below(f, 8) : 1;
	struct iovec iov[8];
	size_t total = random_iov(f, iov, n, BUF_SIZE - 64);
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n };
	ssize_t ret = sendmsg(kcm, &mh, flags);

	trace(f, "sendmsg(%d, %zu bytes in %d, %#x) = %zd", kcm, total, n, flags, ret);
	if (ret > 0)
		atomic_fetch_add(&f->pool->sent, 1);
	check(f, "sendmsg", ret, 0, total, SEND_ERRNOS, 0);
}

static void op_sendmmsg(struct fuzzer *f)
{
	int kcm = any_kcm(f), flags = send_flags(f), n = 1 + below(f, 8);
	struct mmsghdr mm[8];
	struct iovec iov[8];
	int ret;

	random_mmsg(f, mm, iov, n);
	ret = sendmmsg(kcm, mm, n, flags);
	trace(f, "sendmmsg(%d, %d, %#x) = %d", kcm, n, flags, ret);
	if (ret > 0)
		atomic_fetch_add(&f->pool->sent, ret);
	check(f, "sendmmsg", ret, 0, n, SEND_ERRNOS, 0);
}

static int recv_flags(struct fuzzer *f)
{
	static const struct flag_odds odds[] = {
		{ MSG_DONTWAIT, 2 }, { MSG_PEEK, 4 }, { MSG_TRUNC, 6 }, { MSG_WAITALL, 8 }, { 0, 0 },
	};

	return random_flags(f, odds);
}

static void op_recv(struct fuzzer *f)
{
	int kcm = any_kcm(f), flags = recv_flags(f), n = one_in(f, 3) ? 1 + below(f, 4) : 1;
	struct iovec iov[4];
	size_t total = random_iov(f, iov, n, BUF_SIZE - 64);
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = n };
	ssize_t ret = recvmsg(kcm, &mh, flags);
	/* With MSG_TRUNC a datagram socket reports the whole message's length. */
	long hi = (flags & MSG_TRUNC) ? 1 << 30 : (long)total;

	trace(f, "recvmsg(%d, %zu bytes in %d, %#x) = %zd", kcm, total, n, flags, ret);
	if (ret > 0)
		atomic_fetch_add(&f->pool->received, 1);
	check(f, "recvmsg", ret, 0, hi, EAGAIN, EFAULT, EINVAL, EOPNOTSUPP, ENOTCONN, ETIMEDOUT,
	      COMMON, 0);
}

static void op_recvmmsg(struct fuzzer *f)
{
	int kcm = any_kcm(f), flags = recv_flags(f), n = 1 + below(f, 8);
	struct timespec ts = { .tv_nsec = 10 * 1000 * 1000 };
	struct mmsghdr mm[8];
	struct iovec iov[8];
	int ret;

	random_mmsg(f, mm, iov, n);
	ret = recvmmsg(kcm, mm, n, flags, one_in(f, 2) ? &ts : NULL);
	trace(f, "recvmmsg(%d, %d, %#x) = %d", kcm, n, flags, ret);
	if (ret > 0)
		atomic_fetch_add(&f->pool->received, ret);
	check(f, "recvmmsg", ret, 0, n, EAGAIN, EFAULT, EINVAL, EOPNOTSUPP, ENOTCONN, ETIMEDOUT,
	      COMMON, 0);
}

static void op_splice(struct fuzzer *f)
{
	int kcm = any_kcm(f);
	size_t len = one_in(f, 4) ? random_len(f) : 1 + below(f, 65536);
	unsigned int flags = one_in(f, 2) ? SPLICE_F_NONBLOCK : 0;
	ssize_t ret, n;

	if (one_in(f, 8))
		flags |= SPLICE_F_MORE | SPLICE_F_MOVE;
	ret = splice(kcm, NULL, f->pipe[1], NULL, len, flags);
	trace(f, "splice(%d, %zu, %#x) = %zd", kcm, len, flags, ret);
	check(f, "splice", ret, 0, len, EAGAIN, EINVAL, EOPNOTSUPP, ETIMEDOUT, ESPIPE, COMMON, 0);
	do
		n = read(f->pipe[0], f->buf, BUF_SIZE);
	while (n > 0);
}

static void op_sockopt(struct fuzzer *f)
{
	int kcm = any_kcm(f), level = one_in(f, 2) ? SOL_KCM : (one_in(f, 2) ? SOL_SOCKET : below(f, 300));
	int name = one_in(f, 2) ? KCM_RECV_DISABLE : (int)below(f, 70);
	socklen_t len = one_in(f, 2) ? sizeof(int) : below(f, 12);
	int *val = user_ptr(f, len), ret;

	if (level == SOL_SOCKET && (name == SO_RCVTIMEO_OLD || name == SO_SNDTIMEO_OLD ||
				    name == SO_RCVTIMEO_NEW || name == SO_SNDTIMEO_NEW ||
				    name == SO_LINGER))
		name = SO_PRIORITY;	/* keep calls short */
	if (val == (int *)f->buf)
		*val = one_in(f, 2) ? (int)below(f, 2) : (int)next_random(f);
	if (one_in(f, 2)) {
		ret = setsockopt(kcm, level, name, val, len);
		trace(f, "setsockopt(%d, %d, %d, len %u) = %d", kcm, level, name, len, ret);
		/* SOL_SOCKET: SO_BINDTODEVICE to no device, SO_DETACH_FILTER with none. */
		check(f, "setsockopt", ret, 0, 0, EINVAL, EFAULT, ENOPROTOOPT, EOPNOTSUPP, EPERM,
		      EDOM, ENOTCONN, ENODEV, ENOENT, COMMON, 0);
	} else {
		socklen_t *lenp = one_in(f, 16) ? user_ptr(f, sizeof(len)) : &len;

		ret = getsockopt(kcm, level, name, val, lenp);
		trace(f, "getsockopt(%d, %d, %d, len %u) = %d", kcm, level, name, len, ret);
		check(f, "getsockopt", ret, 0, 0, EINVAL, EFAULT, ENOPROTOOPT, EOPNOTSUPP, ENODATA,
		      ENOTCONN, COMMON, 0);
	}
}

static void op_ioctl(struct fuzzer *f)
{
	static const unsigned long cmds[] = {
		SIOCKCMATTACH, SIOCKCMUNATTACH, SIOCKCMCLONE, SIOCINQ, SIOCOUTQ, FIONBIO,
		SIOCPROTOPRIVATE + 3, SIOCPROTOPRIVATE + 15, SIOCGIFFLAGS, SIOCGSTAMP_OLD,
	};
	int ret, kcm = any_kcm(f);
	unsigned long cmd = cmds[below(f, sizeof(cmds) / sizeof(cmds[0]))];
	void *arg = user_ptr(f, 16);

	int valid = (char *)arg >= (char *)f->buf && (char *)arg < (char *)f->buf + 64;

	if (valid)
		for (int i = 0; i < 16; i++)
			((unsigned char *)arg)[i] = one_in(f, 2) ? 0 : next_random(f);
	if (cmd == SIOCKCMCLONE && valid)
		return;	/* op_clone keeps the descriptors it makes */
	ret = ioctl(kcm, cmd, arg);
	trace(f, "ioctl(%d, %#lx, %p) = %d", kcm, cmd, arg, ret);
	/* A clone into the page before the unmapped one (arg is 4 bytes there) succeeds. */
	if (cmd == SIOCKCMCLONE && ret == 0) {
		set_timeouts(((struct kcm_clone *)arg)->fd);
		install(((struct kcm_clone *)arg)->fd, any_kcm(f));
	}
	check(f, "ioctl", ret, 0, 0, EFAULT, ENOENT, EINVAL, EBADF, EOPNOTSUPP, EALREADY, ENOTTY,
	      ENOTSOCK, ENODEV, COMMON, 0);
}

static void op_misc(struct fuzzer *f)
{
	int kcm = any_kcm(f), ret;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct pollfd pfd = { .fd = kcm, .events = POLLIN | POLLOUT };

	switch (below(f, 9)) {
	case 0:
		ret = poll(&pfd, 1, 0);
		trace(f, "poll(%d) = %d", kcm, ret);
		check(f, "poll", ret, 0, 1, EINTR, ENOMEM, 0);
		break;
	case 1:
		ret = fcntl(kcm, F_SETFL, one_in(f, 2) ? O_NONBLOCK : 0);
		trace(f, "fcntl(%d) = %d", kcm, ret);
		check(f, "fcntl", ret, 0, 0, EBADF, 0);
		break;
	case 2:
		ret = bind(kcm, (struct sockaddr *)&sin, sizeof(sin));
		trace(f, "bind(%d) = %d", kcm, ret);
		check(f, "bind", ret, 0, 0, EOPNOTSUPP, EINVAL, COMMON, 0);
		break;
	case 3:
		ret = connect(kcm, (struct sockaddr *)&sin, sizeof(sin));
		trace(f, "connect(%d) = %d", kcm, ret);
		check(f, "connect", ret, 0, 0, EOPNOTSUPP, EINVAL, COMMON, 0);
		break;
	case 4:
		ret = listen(kcm, 1);
		trace(f, "listen(%d) = %d", kcm, ret);
		check(f, "listen", ret, 0, 0, EOPNOTSUPP, EINVAL, COMMON, 0);
		break;
	case 5:
		ret = accept4(kcm, NULL, NULL, SOCK_NONBLOCK);
		trace(f, "accept(%d) = %d", kcm, ret);
		check(f, "accept", ret, -1, -1, 0);
		if (ret >= 0)
			close(ret);
		break;
	case 6:
		ret = shutdown(kcm, below(f, 3));
		trace(f, "shutdown(%d) = %d", kcm, ret);
		check(f, "shutdown", ret, 0, 0, EOPNOTSUPP, EINVAL, ENOTCONN, COMMON, 0);
		break;
	case 7:
		ret = one_in(f, 2) ? getsockname(kcm, (struct sockaddr *)&sin, &len)
				   : getpeername(kcm, (struct sockaddr *)&sin, &len);
		trace(f, "get*name(%d) = %d", kcm, ret);
		check(f, "getsockname/getpeername", ret, 0, 0, EOPNOTSUPP, EINVAL, ENOTCONN, COMMON, 0);
		break;
	default:
		ret = kcm_set_recv_disabled(kcm, below(f, 2));
		trace(f, "KCM_RECV_DISABLE(%d) = %d", kcm, ret);
		check(f, "KCM_RECV_DISABLE", ret ? -1 : 0, 0, 0, COMMON, 0);
		break;
	}
}

typedef void (*fuzz_op)(struct fuzzer *f);

/* Operations and their weights. */
static const struct {
	fuzz_op op;
	unsigned int weight;
} fuzz_ops[] = {
	{ op_socket, 3 },	{ op_clone, 3 },     { op_close_kcm, 2 }, { op_attach, 6 },
	{ op_unattach, 3 },	{ op_tcp, 3 },	     { op_peer_write, 8 }, { op_peer_read, 4 },
	{ op_send, 8 },		{ op_sendmmsg, 3 },  { op_recv, 8 },	   { op_recvmmsg, 3 },
	{ op_splice, 3 },	{ op_sockopt, 4 },   { op_ioctl, 3 },	   { op_misc, 4 },
};

static void fuzz_step(struct fuzzer *f)
{
	unsigned int total = 0, r;
	size_t i;

	for (i = 0; i < sizeof(fuzz_ops) / sizeof(fuzz_ops[0]); i++)
		total += fuzz_ops[i].weight;
	r = below(f, total);
	for (i = 0; r >= fuzz_ops[i].weight; i++)
		r -= fuzz_ops[i].weight;
	f->current_op = i;
	fuzz_ops[i].op(f);
	atomic_fetch_add(&f->pool->ops, 1);
}

static unsigned int fuzz_seconds(void)
{
	const char *s = getenv("KCM_FUZZ_SECONDS");

	return s && atoi(s) > 0 ? atoi(s) : 15;
}

static uint64_t fuzz_seed(void)
{
	const char *s = getenv("KCM_FUZZ_SEED");
	struct timespec ts;

	if (s && *s)
		return strtoull(s, NULL, 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000003u ^ ts.tv_nsec;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct run {
	struct pool *pool;
	uint64_t seed;
	double deadline;
	struct fuzzer f;
};

static void print_failure(struct fuzzer *f, uint64_t seed)
{
	if (!f->failure[0])
		return;
	printf("# seed %llu: %s\n# last operations, oldest first:\n",
	       (unsigned long long)seed, f->failure);
	for (unsigned int i = f->ntrace > TRACE ? f->ntrace - TRACE : 0; i < f->ntrace; i++)
		printf("#   %s\n", f->trace[i % TRACE]);
}

static __thread struct fuzzer *current_fuzzer;

/* A crash of the fuzzer itself: where, and the thread's last operations. */
static void on_crash(int sig, siginfo_t *si, void *uc)
{
	struct fuzzer *f = current_fuzzer;

	ucontext_t *ctx = uc;

	printf("# signal %d at %p, ip %#llx, in operation %d\n", sig, si->si_addr,
	       (unsigned long long)ctx->uc_mcontext.gregs[REG_RIP], f ? f->current_op : -1);
	if (f) {
		snprintf(f->failure, sizeof(f->failure), "crashed");
		print_failure(f, 0);
	}
	fflush(stdout);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void *fuzz_thread(void *arg)
{
	struct run *r = arg;
	struct fuzzer *f = &r->f;

	current_fuzzer = f;
	{
		static __thread char altstack[65536];
		stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };

		sigaltstack(&ss, NULL);
	}

	f->pool = r->pool;
	f->rng = r->seed * 0x9e3779b97f4a7c15ull + 1;
	f->buf = mmap(NULL, BUF_SIZE + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	f->bad = (char *)f->buf + BUF_SIZE;
	if (f->buf == MAP_FAILED || munmap(f->bad, 4096) || pipe2(f->pipe, O_NONBLOCK)) {
		unexpected(f, "setup", -1, errno);
		return NULL;
	}
	while (!atomic_load(&r->pool->stop) && now() < r->deadline)
		fuzz_step(f);
	close(f->pipe[0]);
	close(f->pipe[1]);
	munmap(f->buf, BUF_SIZE);
	return NULL;
}

/* Count of multiplexors /proc/net/kcm shows for this namespace, or -1. */
static int muxes_in_namespace(void)
{
	char text[512];
	int count = -1;

	if (read_file("/proc/net/kcm", text, sizeof(text)) > 0)
		sscanf(text, "*** KCM statistics (%d MUX)", &count);
	return count;
}

static int pool_open(struct pool *p)
{
	int pfd[2], ufd[2];

	memset(p, 0, sizeof(*p));
	p->prog[0] = load_len_prefix_parser();
	p->prog[1] = load_len_prefix_parser();
	p->prog[2] = load_const_parser(0);
	p->prog[3] = load_const_parser(-EBADMSG);
	p->prog[4] = load_const_parser(7);
	p->prog[5] = load_const_parser(1 << 30);
	if (pipe(pfd) || socketpair(AF_UNIX, SOCK_STREAM, 0, ufd))
		return -1;
	close(pfd[1]);
	close(ufd[1]);
	p->misc[0] = pfd[0];
	p->misc[1] = socket(AF_INET, SOCK_DGRAM, 0);
	p->misc[2] = ufd[0];
	p->misc[3] = open("/proc/self/stat", O_RDONLY);
	for (int i = 0; i < NPROG; i++)
		if (p->prog[i] < 0)
			return -1;
	return 0;
}

static void pool_close(struct pool *p)
{
	for (int i = 0; i < NKCM; i++)
		close(KCM_FD + i);
	for (int i = 0; i < NTCP; i++)
		for (int e = 0; e < 2; e++)
			close(tcp_fd(i, e));
	for (int i = 0; i < NPROG; i++)
		close(p->prog[i]);
	for (int i = 0; i < NMISC; i++)
		close(p->misc[i]);
}

/*
 * Runs @nthreads fuzzers in a new network namespace (child process); exits 0
 * when every call behaved and nothing is left after closing everything.
 */
static int fuzz(int nthreads)
{
	uint64_t seed = fuzz_seed();
	unsigned int seconds = fuzz_seconds();
	struct run runs[FUZZ_THREADS];
	pthread_t tids[FUZZ_THREADS];
	struct pool pool;
	int failed = 0, fds_before, mux;
	double start;

	printf("# seed %llu (KCM_FUZZ_SEED=%llu replays it), %u s, %d thread(s)\n",
	       (unsigned long long)seed, (unsigned long long)seed, seconds, nthreads);
	fflush(stdout);
	if (unshare(CLONE_NEWNET) || system("ip link set lo up"))
		return 10;
	signal(SIGPIPE, SIG_IGN);
	{
		struct sigaction sa = { .sa_sigaction = on_crash,
					.sa_flags = SA_SIGINFO | SA_ONSTACK };

		sigaction(SIGSEGV, &sa, NULL);
		sigaction(SIGBUS, &sa, NULL);
		sigaction(SIGABRT, &sa, NULL);
	}
	fds_before = count_open_fds();
	if (pool_open(&pool))
		return 11;
	start = now();
	memset(runs, 0, sizeof(runs));
	for (int i = 0; i < nthreads; i++) {
		runs[i].pool = &pool;
		runs[i].seed = seed + i;
		runs[i].deadline = start + seconds;
		if (nthreads == 1)
			fuzz_thread(&runs[i]);
		else if (pthread_create(&tids[i], NULL, fuzz_thread, &runs[i]))
			return 12;
	}
	for (int i = 0; nthreads > 1 && i < nthreads; i++)
		pthread_join(tids[i], NULL);
	for (int i = 0; i < nthreads; i++) {
		print_failure(&runs[i].f, runs[i].seed);
		failed |= runs[i].f.failure[0] != 0;
	}
	printf("# %lu operations in %.1f s: %lu attached, %lu unattached, %lu clones, "
	       "%lu messages sent, %lu received\n", atomic_load(&pool.ops), now() - start,
	       atomic_load(&pool.attached), atomic_load(&pool.unattached),
	       atomic_load(&pool.cloned), atomic_load(&pool.sent), atomic_load(&pool.received));
	/* A run that never got a socket attached or a message through tested little. */
	if (!failed && (!pool.attached || !pool.unattached || !pool.cloned || !pool.sent ||
			!pool.received)) {
		printf("# the run did not reach every path of the multiplexor\n");
		failed = 1;
	}
	pool_close(&pool);
	if (count_open_fds() != fds_before) {
		printf("# descriptors: %d before, %d after\n", fds_before, count_open_fds());
		failed = 1;
	}
	/* Every multiplexor goes with its last socket. */
	for (int i = 0; (mux = muxes_in_namespace()) != 0 && i < 50; i++)
		usleep(100 * 1000);
	if (mux != 0) {
		printf("# %d multiplexor(s) left after every socket closed\n", mux);
		failed = 1;
	}
	return failed ? 1 : 0;
}

/*
 * Runs the fuzzer in a child. A child still running a minute after its time
 * is up is stuck in a call: its tasks' stacks go to the kernel log (sysrq t)
 * and the test fails.
 */
static int run_in_child(int nthreads)
{
	double deadline = now() + fuzz_seconds() + 60;
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(fuzz(nthreads));
	if (pid < 0)
		return -1;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (now() > deadline) {
			int fd = open("/proc/sysrq-trigger", O_WRONLY);

			printf("# the fuzzer is stuck; task stacks are in the kernel log\n");
			if (fd >= 0 && write(fd, "t", 1) != 1)
				printf("# sysrq: %s\n", strerror(errno));
			close(fd);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -2;
		}
		usleep(100 * 1000);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The harness's time limit: the run, closing everything, and a margin. */
STATELESS_FIXTURE(fuzz);

TEST_F_TIMEOUT(fuzz, single_thread, 3600)
{
	EXPECT_EQ(0, run_in_child(1));
}

TEST_F_TIMEOUT(fuzz, threads, 3600)
{
	EXPECT_EQ(0, run_in_child(FUZZ_THREADS));
}

TEST_HARNESS_MAIN
