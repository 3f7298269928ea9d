// SPDX-License-Identifier: GPL-2.0
/*
 * Hostile input: parsers that return nonsense, ioctl arguments that straddle
 * unmapped memory, sockets that must not become psocks, and a million tiny
 * messages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <net/if.h>

#include "kselftest_harness.h"
#include "kcm_util.h"

/* Waits up to @ms for an error on the TCP socket; returns it (0 if none came). */
static int wait_so_error(int fd, int ms)
{
	for (int t = 0; t < ms; t += 20) {
		int err = sockopt_int(fd, SOL_SOCKET, SO_ERROR);

		if (err)
			return err;
		usleep(20000);
	}
	return 0;
}

struct verdict_case {
	int verdict, err;
	int c_err;	/* net/kcm's, where it differs */
};

/* Each verdict breaks the stream with a clear errno on the TCP socket. */
TEST(parser_verdicts_that_break_the_stream)
{
	static const struct verdict_case cases[] = {
		{ .verdict = -1, .err = EPERM },	/* an errno: passed on */
		{ .verdict = -EBADMSG, .err = EBADMSG },
		/* negative, no errno (net/kcm: SO_ERROR 5000) */
		{ .verdict = -5000, .err = EMSGSIZE, .c_err = 5000 },
		/* (net/kcm: SO_ERROR INT_MIN, the negation overflowed) */
		{ .verdict = INT_MIN, .err = EMSGSIZE, .c_err = INT_MIN },
		{ .verdict = INT_MAX, .err = EMSGSIZE },	/* a length near 2^31 */
		/* larger than any receive buffer */
		{ .verdict = 0x40000000, .err = EMSGSIZE },
	};
	unsigned char buf[64] = { 0 };

	for (int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int err = is_c_provider() && cases[i].c_err ? cases[i].c_err : cases[i].err;
		struct kcm_conn c;

		ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_const_parser(cases[i].verdict)));
		ASSERT_EQ(0, write_all(c.tcp[1], buf, sizeof(buf)));
		EXPECT_EQ(err, wait_so_error(c.tcp[0], 5000))
			TH_LOG("verdict %d", cases[i].verdict);
		/* Nothing was delivered, and the socket is usable after unattach. */
		EXPECT_EQ(-1, recv(c.kcm, buf, sizeof(buf), MSG_DONTWAIT));
		EXPECT_EQ(0, kcm_unattach(c.kcm, c.tcp[0]));
		kcm_conn_close(&c);
	}
}

/* A parser that never gives a length: EMSGSIZE once the prefix outgrows the receive buffer. */
TEST(parser_returning_zero_forever)
{
	static unsigned char buf[1 << 16];
	struct kcm_conn c;
	int err = 0;

	SKIP_ON_C("the stream never breaks, SO_ERROR stays 0");
	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_const_parser(0)));
	/* Write until the error shows (the peer may block once the window closes). */
	fcntl(c.tcp[1], F_SETFL, O_NONBLOCK);
	for (int i = 0; i < 400 && !err; i++) {
		if (write(c.tcp[1], buf, sizeof(buf)) < 0 && errno != EAGAIN)
			break;
		err = wait_so_error(c.tcp[0], 20);
	}
	if (!err)
		err = wait_so_error(c.tcp[0], 5000);
	EXPECT_EQ(EMSGSIZE, err);
	EXPECT_EQ(-1, recv(c.kcm, buf, sizeof(buf), MSG_DONTWAIT));
	kcm_conn_close(&c);
}

/* Reads past the data (BPF_LD_ABS beyond the buffer ends the program with 0). */
TEST(parser_reading_past_the_data_times_out)
{
	struct bpf_insn insns[] = {
		INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0),
		INSN(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 1 << 20),
		INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	struct timeval tv = { .tv_usec = 300000 };
	unsigned char buf[32] = { 0 };
	struct kcm_conn c;

	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, bpf_load(BPF_PROG_TYPE_SOCKET_FILTER, insns, 3)));
	ASSERT_EQ(0, setsockopt(c.tcp[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	ASSERT_EQ(0, write_all(c.tcp[1], buf, sizeof(buf)));
	EXPECT_EQ(ETIMEDOUT, wait_so_error(c.tcp[0], 5000));
	kcm_conn_close(&c);
}

/* A length smaller than the header it read: messages of that length, no more. */
TEST(parser_length_smaller_than_its_header)
{
	unsigned char out[16];
	struct kcm_conn c;

	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_const_parser(1)));
	ASSERT_EQ(0, write_all(c.tcp[1], "wxyz", 4));
	for (int i = 0; i < 4; i++) {
		struct pollfd p = { .fd = c.kcm, .events = POLLIN };

		ASSERT_EQ(1, poll(&p, 1, 5000));
		ASSERT_EQ(1, recv(c.kcm, out, sizeof(out), 0));
		EXPECT_EQ("wxyz"[i], out[0]);
	}
	kcm_conn_close(&c);
}

/*
 * A length ending inside bytes the parser already saw in an earlier segment:
 * 0 while it has fewer than 100 bytes, then 10. EPROTO (as strparser).
 */
TEST(parser_length_inside_bytes_already_taken)
{
	struct bpf_insn insns[] = {
		/* r0 = skb->len; if r0 < 100 return 0; return 10 */
		INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_0, BPF_REG_1, 0, 0),
		INSN(BPF_JMP | BPF_JGE | BPF_K, BPF_REG_0, 0, 2, 100),
		INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0),
		INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
		INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 10),
		INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	unsigned char buf[80] = { 0 };
	struct kcm_conn c;

	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, bpf_load(BPF_PROG_TYPE_SOCKET_FILTER, insns, 6)));
	ASSERT_EQ(0, write_all(c.tcp[1], buf, sizeof(buf)));
	usleep(300000);
	ASSERT_EQ(0, write_all(c.tcp[1], buf, sizeof(buf)));
	EXPECT_EQ(EPROTO, wait_so_error(c.tcp[0], 5000));
	EXPECT_EQ(-1, recv(c.kcm, buf, sizeof(buf), MSG_DONTWAIT));
	kcm_conn_close(&c);
}

/* ioctl arguments that run into an unmapped page: EFAULT, nothing attached or leaked. */
TEST(ioctl_arguments_straddling_unmapped_memory)
{
	char *pages = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int kcm = socket(AF_KCM, SOCK_DGRAM, 0), bpf = load_len_prefix_parser(), tcp[2];
	int fds_before;

	ASSERT_NE(MAP_FAILED, pages);
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, tcp_pair(AF_INET, tcp));
	ASSERT_EQ(0, munmap(pages + 4096, 4096));
	fds_before = count_open_fds();
	/* struct kcm_attach {fd, bpf_fd}: fd readable, bpf_fd on the unmapped page. */
	memcpy(pages + 4092, &tcp[0], 4);
	errno = 0;
	EXPECT_EQ(-1, ioctl(kcm, SIOCKCMATTACH, pages + 4092));
	EXPECT_EQ(EFAULT, errno);
	errno = 0;
	EXPECT_EQ(-1, ioctl(kcm, SIOCKCMUNATTACH, pages + 4094));
	EXPECT_EQ(EFAULT, errno);
	/* struct kcm_clone is written back: a read-only or unmapped destination. */
	errno = 0;
	EXPECT_EQ(-1, ioctl(kcm, SIOCKCMCLONE, pages + 4094));
	EXPECT_EQ(EFAULT, errno);
	ASSERT_EQ(0, mprotect(pages, 4096, PROT_READ));
	errno = 0;
	EXPECT_EQ(-1, ioctl(kcm, SIOCKCMCLONE, pages));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(fds_before, count_open_fds());
	/* Nothing was attached. */
	EXPECT_EQ(-ENOENT, kcm_unattach(kcm, tcp[0]));
	EXPECT_EQ(0, kcm_attach(kcm, tcp[0], bpf));
	munmap(pages, 4096);
	close(kcm);
	close(tcp[0]);
	close(tcp[1]);
	close(bpf);
}

/* Sockets that are not TCP streams: EOPNOTSUPP (as net/kcm). */
TEST(attach_of_other_kinds_of_socket)
{
	int kcm = socket(AF_KCM, SOCK_DGRAM, 0), other_kcm = socket(AF_KCM, SOCK_DGRAM, 0);
	int bpf = load_len_prefix_parser(), unix_pair[2], udp = socket(AF_INET, SOCK_DGRAM, 0);

	ASSERT_LE(0, kcm);
	ASSERT_LE(0, other_kcm);
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, unix_pair));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(kcm, other_kcm, bpf));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(kcm, kcm, bpf));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(kcm, unix_pair[0], bpf));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(kcm, udp, bpf));
	close(kcm);
	close(other_kcm);
	close(unix_pair[0]);
	close(unix_pair[1]);
	close(udp);
	close(bpf);
}

static int sockmap_create(void)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_SOCKMAP;
	attr.key_size = 4;
	attr.value_size = 4;
	attr.max_entries = 1;
	return syscall(__NR_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
}

static int sockmap_add(int map, int fd)
{
	union bpf_attr attr;
	int key = 0;

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = map;
	attr.key = (unsigned long)&key;
	attr.value = (unsigned long)&fd;
	return syscall(__NR_bpf, BPF_MAP_UPDATE_ELEM, &attr, sizeof(attr)) ? -errno : 0;
}

/* A socket owned by sockmap cannot be attached, and a psock cannot join a sockmap. */
TEST(sockmap_and_kcm_exclude_each_other)
{
	int kcm = socket(AF_KCM, SOCK_DGRAM, 0), bpf = load_len_prefix_parser();
	int map = sockmap_create(), a[2], b[2];
	unsigned char buf[64], out[64];
	size_t n = make_frame(buf, 4, 30);
	struct pollfd p = { .fd = kcm, .events = POLLIN };

	ASSERT_LE(0, kcm);
	if (map < 0)
		SKIP(return, "no sockmap: %s", strerror(errno));
	ASSERT_EQ(0, tcp_pair(AF_INET, a));
	ASSERT_EQ(0, tcp_pair(AF_INET, b));
	ASSERT_EQ(0, sockmap_add(map, a[0]));
	EXPECT_EQ(-EALREADY, kcm_attach(kcm, a[0], bpf));
	ASSERT_EQ(0, kcm_attach(kcm, b[0], bpf));
	/* kcm-rs holds the socket's ULP slot while attached (sockmap: EINVAL). */
	EXPECT_EQ(is_c_provider() ? -EBUSY : -EINVAL, sockmap_add(map, b[0]));
	/* The psock still works. */
	ASSERT_EQ(0, write_all(b[1], buf, n));
	ASSERT_EQ(1, poll(&p, 1, 5000));
	EXPECT_EQ(n, recv(kcm, out, sizeof(out), 0));
	close(map);
	close(kcm);
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
	close(bpf);
}

/*
 * A TCP socket with an upper-layer protocol whose stream is not the
 * application's is refused: here the TLS ULP before any key is set (kcm_tls
 * attaches TLS sockets with keys for both directions).
 */
TEST(socket_with_a_ulp_is_refused)
{
	int kcm = socket(AF_KCM, SOCK_DGRAM, 0), bpf = load_len_prefix_parser(), tcp[2];

	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, tcp_pair(AF_INET, tcp));
	if (setsockopt(tcp[0], IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")))
		SKIP(return, "no TLS ULP: %s", strerror(errno));
	SKIP_ON_C("attaches it and parses the ULP's stream");
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(kcm, tcp[0], bpf));
	close(kcm);
	close(tcp[0]);
	close(tcp[1]);
	close(bpf);
}

/*
 * While attached, no ULP can be stacked over the psock (TLS would take its
 * callbacks and hand them back after unattach); after unattach it can.
 */
TEST(no_ulp_while_attached)
{
	int kcm = socket(AF_KCM, SOCK_DGRAM, 0), bpf = load_len_prefix_parser(), tcp[2];
	int other = socket(AF_KCM, SOCK_DGRAM, 0);
	unsigned char buf[64], out[64];
	size_t n = make_frame(buf, 3, 20);
	char name[32] = "";
	socklen_t len = sizeof(name);

	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, tcp_pair(AF_INET, tcp));
	ASSERT_EQ(0, kcm_attach(kcm, tcp[0], bpf));
	if (is_c_provider())
		SKIP(goto out, "net/kcm lets a ULP take over an attached socket");
	EXPECT_EQ(-1, setsockopt(tcp[0], IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")));
	EXPECT_EQ(EEXIST, errno);
	ASSERT_EQ(0, getsockopt(tcp[0], IPPROTO_TCP, TCP_ULP, name, &len));
	EXPECT_STREQ("kcm", name);
	/* The socket cannot become a listener while attached either. */
	EXPECT_EQ(-1, listen(tcp[0], 1));
	/* The psock still works. */
	ASSERT_EQ(0, write_all(tcp[1], buf, n));
	EXPECT_EQ(n, recv(kcm, out, sizeof(out), 0));
	/* Attached twice: EALREADY, as net/kcm, also on another multiplexor. */
	ASSERT_LE(0, other);
	EXPECT_EQ(-EALREADY, kcm_attach(kcm, tcp[0], bpf));
	EXPECT_EQ(-EALREADY, kcm_attach(other, tcp[0], bpf));
	ASSERT_EQ(0, kcm_unattach(kcm, tcp[0]));
	len = sizeof(name);
	ASSERT_EQ(0, getsockopt(tcp[0], IPPROTO_TCP, TCP_ULP, name, &len));
	EXPECT_EQ(0, len);
	if (setsockopt(tcp[0], IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")))
		SKIP(goto out, "no TLS ULP: %s", strerror(errno));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(kcm, tcp[0], bpf));
out:
	close(other);
	close(kcm);
	close(tcp[0]);
	close(tcp[1]);
	close(bpf);
}

/* A TCP socket of another network namespace can be attached and works. */
TEST(tcp_socket_of_another_namespace)
{
	int kcm = socket(AF_KCM, SOCK_DGRAM, 0), bpf = load_len_prefix_parser(), tcp[2];
	int home = open("/proc/self/ns/net", O_RDONLY);
	struct ifreq ifr = { .ifr_name = "lo" };
	unsigned char buf[64], out[64];
	size_t n = make_frame(buf, 6, 40);
	struct pollfd p = { .fd = kcm, .events = POLLIN };
	int s;

	ASSERT_LE(0, kcm);
	ASSERT_LE(0, home);
	ASSERT_EQ(0, unshare(CLONE_NEWNET));
	s = socket(AF_INET, SOCK_DGRAM, 0);
	ASSERT_EQ(0, ioctl(s, SIOCGIFFLAGS, &ifr));
	ifr.ifr_flags |= IFF_UP;
	ASSERT_EQ(0, ioctl(s, SIOCSIFFLAGS, &ifr));
	close(s);
	ASSERT_EQ(0, tcp_pair(AF_INET, tcp));
	ASSERT_EQ(0, setns(home, CLONE_NEWNET));
	close(home);
	/* net/kcm has no namespace check either: the multiplexor is the KCM socket's. */
	ASSERT_EQ(0, kcm_attach(kcm, tcp[0], bpf));
	ASSERT_EQ(0, write_all(tcp[1], buf, n));
	ASSERT_EQ(1, poll(&p, 1, 5000));
	EXPECT_EQ(n, recv(kcm, out, sizeof(out), 0));
	EXPECT_TRUE(check_frame(out, n, 6));
	ASSERT_EQ(n, send(kcm, buf, n, 0));
	ASSERT_EQ(0, read_all(tcp[1], out, n));
	EXPECT_TRUE(check_frame(out, n, 6));
	/* The other namespace goes away with its last socket, in either order. */
	close(tcp[1]);
	close(tcp[0]);
	close(kcm);
	close(bpf);
}

#define TINY_MESSAGES 1000000

/* Message i: a 4-byte length and i % 4 payload bytes of value i & 0xff. */
static size_t tiny_frame(unsigned char *p, unsigned int i)
{
	uint32_t be = htonl(i % 4);

	memcpy(p, &be, 4);
	memset(p + 4, i & 0xff, i % 4);
	return 4 + i % 4;
}

static void *write_tiny(void *arg)
{
	static unsigned char chunk[65536];
	int peer = *(int *)arg;
	unsigned int i = 0;

	while (i < TINY_MESSAGES) {
		size_t len = 0;

		while (i < TINY_MESSAGES && len + 8 <= sizeof(chunk))
			len += tiny_frame(chunk + len, i++);
		if (write_all(peer, chunk, len))
			return (void *)1;
	}
	return NULL;
}

/* A million messages of 4 to 7 bytes, in order and intact, taken 256 at a time. */
STATELESS_FIXTURE(long_run);

TEST_F_TIMEOUT(long_run, a_million_tiny_messages, 900)
{
	static unsigned char bufs[256][16];
	struct mmsghdr mm[256];
	struct iovec iov[256];
	struct kcm_conn c;
	unsigned int got = 0;
	pthread_t writer;
	void *wrote;

	SKIP_ON_C("mis-frames messages that do not start a segment");
	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_len_prefix_parser()));
	for (int k = 0; k < 256; k++) {
		iov[k] = (struct iovec){ .iov_base = bufs[k], .iov_len = sizeof(bufs[k]) };
		memset(&mm[k], 0, sizeof(mm[k]));
		mm[k].msg_hdr.msg_iov = &iov[k];
		mm[k].msg_hdr.msg_iovlen = 1;
	}
	ASSERT_EQ(0, pthread_create(&writer, NULL, write_tiny, &c.tcp[1]));
	while (got < TINY_MESSAGES) {
		int n;

		ASSERT_EQ(1, wait_readable(c.kcm, 10000)) TH_LOG("stuck after %u messages", got);
		n = recvmmsg(c.kcm, mm, 256, MSG_DONTWAIT, NULL);
		if (n < 0 && errno == EAGAIN)
			continue;
		ASSERT_LT(0, n) TH_LOG("recvmmsg: %s", strerror(errno));
		for (int k = 0; k < n; k++, got++) {
			unsigned char want[8];
			size_t len = tiny_frame(want, got);

			ASSERT_EQ(len, mm[k].msg_len) TH_LOG("message %u", got);
			ASSERT_EQ(0, memcmp(want, bufs[k], len)) TH_LOG("message %u", got);
		}
	}
	ASSERT_EQ(0, pthread_join(writer, &wrote));
	EXPECT_EQ(NULL, wrote);
	EXPECT_EQ(-1, recv(c.kcm, bufs[0], sizeof(bufs[0]), MSG_DONTWAIT));
	kcm_conn_close(&c);
}

TEST_HARNESS_MAIN
