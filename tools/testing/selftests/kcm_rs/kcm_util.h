/* SPDX-License-Identifier: GPL-2.0 */
/* Small helpers shared by the kcm-rs selftests. */
#ifndef KCM_UTIL_H
#define KCM_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/kcm.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#ifndef AF_KCM
#define AF_KCM 41
#endif
#ifndef SOL_KCM
#define SOL_KCM 281
#endif
/* Older C library headers lack these. */
#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

static inline int sockopt_int(int fd, int level, int name)
{
	int val = -1;
	socklen_t len = sizeof(val);

	if (getsockopt(fd, level, name, &val, &len))
		return -errno - 1000;
	return val;
}

/* A new KCM socket on the multiplexor of @fd, or -1 with errno. */
static inline int kcm_clone(int fd)
{
	struct kcm_clone info = { .fd = -1 };

	if (ioctl(fd, SIOCKCMCLONE, &info))
		return -1;
	return info.fd;
}

static inline int kcm_recv_disabled(int fd)
{
	return sockopt_int(fd, SOL_KCM, KCM_RECV_DISABLE);
}

static inline int kcm_set_recv_disabled(int fd, int val)
{
	return setsockopt(fd, SOL_KCM, KCM_RECV_DISABLE, &val, sizeof(val)) ? -errno : 0;
}

static inline int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* The provider under test: KCM_MODULE (kcm_rs or kcm) and its .ko path. */
static inline const char *kcm_module_name(void)
{
	const char *m = getenv("KCM_MODULE");

	return m && *m ? m : "kcm_rs";
}

static inline int module_loaded(const char *name)
{
	char line[256];
	size_t n = strlen(name);
	FILE *f = fopen("/proc/modules", "r");
	int found = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, n) && line[n] == ' ')
			found = 1;
	fclose(f);
	return found;
}

/* delete_module(2) without waiting: EWOULDBLOCK while the module is in use. */
static inline int unload_module(const char *name)
{
	return syscall(__NR_delete_module, name, O_NONBLOCK) ? -errno : 0;
}

static inline int load_module(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = syscall(__NR_finit_module, fd, "", 0) ? -errno : 0;
	close(fd);
	return ret;
}

/*
 * BPF socket-filter parsers, as raw instructions (no libbpf needed).
 * Frames are a 4-byte big-endian payload length followed by the payload.
 */
#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })

static inline int bpf_load(int type, const struct bpf_insn *insns, int n)
{
	static char log[4096];
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = type;
	attr.insns = (unsigned long)insns;
	attr.insn_cnt = n;
	attr.license = (unsigned long)"GPL";
	attr.log_buf = (unsigned long)log;
	attr.log_size = sizeof(log);
	attr.log_level = 1;
	return syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
}

/* Message length = 4 + the big-endian u32 at offset 0 (0 while fewer than 4 bytes). */
static inline int load_len_prefix_parser(void)
{
	struct bpf_insn insns[] = {
		INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0),
		INSN(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0),
		INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_0, 0, 0, 4),
		INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};

	return bpf_load(BPF_PROG_TYPE_SOCKET_FILTER, insns, 4);
}

/* A parser that returns a constant (a length, 0, or a negative errno). */
static inline int load_const_parser(int value)
{
	struct bpf_insn insns[] = {
		INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, value),
		INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};

	return bpf_load(BPF_PROG_TYPE_SOCKET_FILTER, insns, 2);
}

/*
 * A connected pair of stream sockets of @protocol (IPPROTO_TCP, IPPROTO_MPTCP)
 * over loopback: fds[0] the client, fds[1] the accepted end.
 */
static inline int stream_pair(int family, int protocol, int fds[2])
{
	struct sockaddr_storage ss;
	socklen_t len;
	int lfd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	}
	lfd = socket(family, SOCK_STREAM, protocol);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, 8) ||
	    getsockname(lfd, (struct sockaddr *)&ss, &len))
		return -1;
	fds[0] = socket(family, SOCK_STREAM, protocol);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&ss, len))
		return -1;
	fds[1] = accept(lfd, NULL, NULL);
	close(lfd);
	if (fds[1] < 0)
		return -1;
	setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

/* A connected TCP pair over loopback: fds[0] the client, fds[1] the accepted end. */
static inline int tcp_pair(int family, int fds[2])
{
	return stream_pair(family, IPPROTO_TCP, fds);
}

static inline int kcm_attach(int kcm, int fd, int bpf_fd)
{
	struct kcm_attach a = { .fd = fd, .bpf_fd = bpf_fd };

	return ioctl(kcm, SIOCKCMATTACH, &a) ? -errno : 0;
}

static inline int kcm_unattach(int kcm, int fd)
{
	struct kcm_unattach u = { .fd = fd };

	return ioctl(kcm, SIOCKCMUNATTACH, &u) ? -errno : 0;
}

/*
 * A KCM socket of @type with the client end of a new loopback TCP pair
 * attached with @bpf: tcp[0] is attached, tcp[1] is the peer. The connection
 * owns @bpf (kcm_conn_close closes it). 0, or -1 / -errno on failure.
 */
struct kcm_conn {
	int kcm, bpf, tcp[2];
};

static inline int kcm_conn_open(struct kcm_conn *c, int type, int bpf)
{
	c->bpf = bpf;
	c->kcm = socket(AF_KCM, type, 0);
	if (c->bpf < 0 || c->kcm < 0 || tcp_pair(AF_INET, c->tcp))
		return -1;
	return kcm_attach(c->kcm, c->tcp[0], c->bpf);
}

static inline void kcm_conn_close(struct kcm_conn *c)
{
	close(c->kcm);
	close(c->tcp[0]);
	close(c->tcp[1]);
	close(c->bpf);
}

/* Writes all of buf (blocking); -1 on error. */
static inline int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/* Reads exactly len bytes (blocking); -1 on error or EOF. */
static inline int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/* A frame: 4-byte big-endian payload length, then payload bytes derived from seq. */
static inline size_t make_frame(unsigned char *buf, unsigned int seq, size_t payload)
{
	uint32_t be = htonl(payload);

	memcpy(buf, &be, 4);
	for (size_t i = 0; i < payload; i++)
		buf[4 + i] = (unsigned char)(seq * 131 + i * 7);
	return payload + 4;
}

/* Checks a received frame; returns its seq-independent validity given the expected seq. */
static inline int check_frame(const unsigned char *buf, size_t len, unsigned int seq)
{
	uint32_t be;

	if (len < 4)
		return 0;
	memcpy(&be, buf, 4);
	if (ntohl(be) != len - 4)
		return 0;
	for (size_t i = 0; i < len - 4; i++)
		if (buf[4 + i] != (unsigned char)(seq * 131 + i * 7))
			return 0;
	return 1;
}

/* poll(2) for POLLIN on one descriptor: 1 when readable, 0 on timeout. */
static inline int wait_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, timeout_ms);
}

/* Reads up to @cap - 1 bytes of @path into @buf, NUL-terminated: the length, or -errno. */
static inline int read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY), n, total = 0;

	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf + total, cap - 1 - total)) > 0)
		total += n;
	close(fd);
	buf[total] = 0;
	return total;
}

/*
 * Reads one message of @payload bytes from a stream into @buf and checks it
 * is frame @seq: 0, or -1 (short stream), -2 (wrong length), -3 (bytes).
 */
static inline int read_frame(int fd, unsigned char *buf, size_t cap, unsigned int seq,
			     size_t payload)
{
	uint32_t be;

	if (payload + 4 > cap || read_all(fd, buf, 4))
		return -1;
	memcpy(&be, buf, 4);
	if (ntohl(be) != payload || read_all(fd, buf + 4, payload))
		return -2;
	return check_frame(buf, payload + 4, seq) ? 0 : -3;
}

/*
 * A message of each of @n payload sizes both ways between the multiplexor
 * @kcm and the @peer end of its only psock: the peer writes them all in one
 * write (so messages do not line up with segments or records), @kcm receives
 * each whole; then @kcm sends each, the peer reads and checks the stream.
 * 0, or the number (1-based) of the first message that failed, negated for
 * the send direction.
 */
static inline int exchange_sizes(int kcm, int peer, const size_t *sizes, unsigned int n,
				 unsigned char *buf, size_t cap)
{
	size_t len, total = 0;

	for (unsigned int i = 0; i < n; i++) {
		if (total + sizes[i] + 4 > cap)
			return 1;
		total += make_frame(buf + total, i, sizes[i]);
	}
	if (write_all(peer, buf, total))
		return 1;
	for (unsigned int i = 0; i < n; i++) {
		if (wait_readable(kcm, 20000) != 1)
			return i + 1;
		len = recv(kcm, buf, cap, 0);
		if (len != sizes[i] + 4 || !check_frame(buf, len, i))
			return i + 1;
	}
	for (unsigned int i = 0; i < n; i++) {
		len = make_frame(buf, 100 + i, sizes[i]);
		if (send(kcm, buf, len, 0) != (ssize_t)len)
			return -(int)(i + 1);
	}
	for (unsigned int i = 0; i < n; i++)
		if (read_frame(peer, buf, cap, 100 + i, sizes[i]))
			return -(int)(i + 1);
	return 0;
}

/*
 * Unattach hands the socket back at a message boundary, usable on its own:
 * with @attached attached to @kcm (@peer its other end), one message each way
 * through the multiplexor, SIOCKCMUNATTACH, then one message each way on the
 * socket itself, and nothing more reaches @kcm (left O_NONBLOCK). 0, or the
 * number of the step that failed.
 */
static inline int unattach_round_trip(int kcm, int attached, int peer, unsigned char *buf,
				      size_t cap)
{
	size_t n = make_frame(buf, 1, 3000);

	if (write_all(peer, buf, n) || wait_readable(kcm, 20000) != 1 ||
	    recv(kcm, buf, cap, 0) != (ssize_t)n || !check_frame(buf, n, 1))
		return 1;
	n = make_frame(buf, 2, 500);
	if (send(kcm, buf, n, 0) != (ssize_t)n || read_frame(peer, buf, cap, 2, 500))
		return 2;
	if (kcm_unattach(kcm, attached))
		return 3;
	n = make_frame(buf, 3, 20000);
	if (write_all(peer, buf, n) || wait_readable(attached, 20000) != 1 ||
	    read_frame(attached, buf, cap, 3, 20000))
		return 4;
	n = make_frame(buf, 4, 700);
	if (write_all(attached, buf, n) || read_frame(peer, buf, cap, 4, 700))
		return 5;
	if (fcntl(kcm, F_SETFL, fcntl(kcm, F_GETFL) | O_NONBLOCK) ||
	    recv(kcm, buf, cap, 0) != -1 || errno != EAGAIN)
		return 6;
	return 0;
}

static inline int is_c_provider(void)
{
	const char *p = getenv("KCM_PROVIDER");

	return p && !strcmp(p, "c");
}

/*
 * Skips a test against net/kcm, with what net/kcm does as the reason: a test
 * of a kcm-rs behaviour net/kcm does not have by design, or one net/kcm is
 * known to fail where the harness cannot mark an expected failure (TEST(), a
 * fixture without variants, a result that depends on timing), so that
 * make check-c lists it.
 */
#define SKIP_ON_C(reason) \
	do { \
		if (is_c_provider()) \
			SKIP(return, "net/kcm: " reason); \
	} while (0)

/*
 * A fixture without state, for tests that need their own time limit: the harness
 * has TEST_F_TIMEOUT but no plain TEST_TIMEOUT. Include after kselftest_harness.h.
 */
#define STATELESS_FIXTURE(name)			\
	FIXTURE(name) { int unused; };		\
	FIXTURE_SETUP(name) {}			\
	FIXTURE_TEARDOWN(name) {}

#endif /* KCM_UTIL_H */
