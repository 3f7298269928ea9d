// SPDX-License-Identifier: GPL-2.0
/*
 * Multipath TCP sockets as psocks. Over loopback an MPTCP connection has one
 * subflow; the two_paths tests build two network namespaces joined by two
 * veth pairs, so that a connection gets a second subflow on a second path,
 * and take a path down while messages flow. net/kcm refuses MPTCP sockets
 * (EOPNOTSUPP): these tests are skipped for it.
 */
#include <pthread.h>
#include <sys/wait.h>
#include "kselftest_harness.h"
#include "kcm_util.h"
#include "kcm_netns.h"

#define SKIP_FOR_NET_KCM()							\
	do {									\
		if (is_c_provider())						\
			SKIP(return, "net/kcm takes plain TCP only (EOPNOTSUPP)"); \
	} while (0)

static unsigned char buf[256 * 1024];

FIXTURE(mptcp)
{
	int kcm, bpf, fds[2];
};

FIXTURE_VARIANT(mptcp)
{
	int family;
};

FIXTURE_VARIANT_ADD(mptcp, ipv4)
{
	.family = AF_INET,
};

FIXTURE_VARIANT_ADD(mptcp, ipv6)
{
	.family = AF_INET6,
};

FIXTURE_SETUP(mptcp)
{
	SKIP_FOR_NET_KCM();
	self->kcm = socket(AF_KCM, SOCK_DGRAM, 0);
	ASSERT_LE(0, self->kcm);
	self->bpf = load_len_prefix_parser();
	ASSERT_LE(0, self->bpf);
	ASSERT_EQ(0, stream_pair(variant->family, IPPROTO_MPTCP, self->fds));
}

FIXTURE_TEARDOWN(mptcp)
{
	if (is_c_provider())
		return;
	close(self->kcm);
	close(self->fds[0]);
	close(self->fds[1]);
	close(self->bpf);
}

static const size_t sizes[] = { 0, 1, 100, 1000, 16384, 70000, 100000 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* Messages both ways, whole and intact, also in one write; /proc names the psock MPTCP. */
TEST_F(mptcp, roundtrip)
{
	char text[4096];

	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	ASSERT_EQ(0, exchange_sizes(self->kcm, self->fds[1], sizes, NSIZES, buf, sizeof(buf)));
	ASSERT_LT(0, read_file("/proc/net/kcm", text, sizeof(text)));
	EXPECT_NE(NULL, strstr(text, "MPTCP")) TH_LOG("%s", text);
}

/* MSG_BATCH corks the MPTCP socket (TCP_CORK on its subflows) and the last send pushes. */
TEST_F(mptcp, batch)
{
	size_t n;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	for (unsigned int i = 0; i < 8; i++) {
		n = make_frame(buf, i, 300);
		ASSERT_EQ(n, send(self->kcm, buf, n, i < 7 ? MSG_BATCH : 0));
	}
	for (unsigned int i = 0; i < 8; i++)
		ASSERT_EQ(0, read_frame(self->fds[1], buf, sizeof(buf), i, 300));
}

/* Both ends multiplexed: the accepted MPTCP socket on a second multiplexor. */
TEST_F(mptcp, both_ends)
{
	int other = socket(AF_KCM, SOCK_SEQPACKET, 0);
	size_t n;

	ASSERT_LE(0, other);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	ASSERT_EQ(0, kcm_attach(other, self->fds[1], self->bpf));
	for (unsigned int i = 0; i < 50; i++) {
		n = make_frame(buf, i, 10 * i);
		ASSERT_EQ(n, send(self->kcm, buf, n, 0));
		ASSERT_EQ(1, wait_readable(other, 20000));
		ASSERT_EQ(n, recv(other, buf, sizeof(buf), 0));
		ASSERT_TRUE(check_frame(buf, n, i));
		n = make_frame(buf, 1000 + i, 5 * i);
		ASSERT_EQ(n, send(other, buf, n, MSG_EOR));
		ASSERT_EQ(1, wait_readable(self->kcm, 20000));
		ASSERT_EQ(n, recv(self->kcm, buf, sizeof(buf), 0));
		ASSERT_TRUE(check_frame(buf, n, 1000 + i));
	}
	close(other);
}

/* Unattach gives the socket back at a message boundary; it reads and writes on its own. */
TEST_F(mptcp, unattach_leaves_socket_usable)
{
	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	ASSERT_EQ(0, unattach_round_trip(self->kcm, self->fds[0], self->fds[1], buf, sizeof(buf)));
}

/* Listening and unconnected MPTCP sockets are refused, and a second attach is EALREADY. */
TEST_F(mptcp, attach_errors)
{
	int lfd = socket(variant->family, SOCK_STREAM, IPPROTO_MPTCP);
	int fresh = socket(variant->family, SOCK_STREAM, IPPROTO_MPTCP);
	struct sockaddr_storage ss = { .ss_family = variant->family };

	ASSERT_LE(0, lfd);
	ASSERT_LE(0, fresh);
	ASSERT_EQ(0, bind(lfd, (struct sockaddr *)&ss, sizeof(ss)));
	ASSERT_EQ(0, listen(lfd, 1));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, lfd, self->bpf));
	EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, fresh, self->bpf));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	EXPECT_EQ(-EALREADY, kcm_attach(self->kcm, self->fds[0], self->bpf));
	close(lfd);
	close(fresh);
}

/* The peer resets: the psock stops with an error on the socket and the mux goes on. */
TEST_F(mptcp, peer_close_breaks_psock)
{
	struct pollfd p = { .fd = self->fds[0] };
	int err;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	close(self->fds[1]);
	self->fds[1] = -1;
	ASSERT_EQ(1, poll(&p, 1, 10000));
	err = sockopt_int(self->fds[0], SOL_SOCKET, SO_ERROR);
	EXPECT_EQ(EPIPE, err);
	EXPECT_EQ(0, kcm_unattach(self->kcm, self->fds[0]));
}

/*
 * Two paths. The server's echo service runs in a child process in the
 * server namespace; the client side (this process) multiplexes one MPTCP
 * connection that has a subflow on each path.
 */
FIXTURE(two_paths)
{
	struct two_paths net;
	int kcm, bpf, conn;
	pid_t server;
};

#define PORT 7100

/*
 * The server: accepts one MPTCP connection and echoes every framed message
 * back, until EOF. Runs in the server namespace.
 */
static int echo_server(int lfd)
{
	int fd = accept(lfd, NULL, NULL);

	if (fd < 0)
		return 1;
	for (;;) {
		uint32_t be;
		size_t len;

		if (read_all(fd, buf, 4))
			return 0;
		memcpy(&be, buf, 4);
		len = ntohl(be);
		if (len > sizeof(buf) - 4 || read_all(fd, buf + 4, len) ||
		    write_all(fd, buf, len + 4))
			return 2;
	}
}

FIXTURE_SETUP(two_paths)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(PORT) };
	int lfd;

	self->server = -1;
	self->conn = -1;
	SKIP_FOR_NET_KCM();
	ASSERT_EQ(0, two_path_setup(&self->net));
	/* The listener belongs to the server namespace. */
	ASSERT_EQ(0, netns_enter(self->net.server_ns));
	lfd = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
	ASSERT_LE(0, lfd);
	ASSERT_EQ(0, bind(lfd, (struct sockaddr *)&addr, sizeof(addr)));
	ASSERT_EQ(0, listen(lfd, 1));
	ASSERT_EQ(0, netns_enter(self->net.client_ns));
	self->server = fork();
	ASSERT_LE(0, self->server);
	if (!self->server)
		_exit(echo_server(lfd));
	close(lfd);

	self->kcm = socket(AF_KCM, SOCK_DGRAM, 0);
	ASSERT_LE(0, self->kcm);
	self->bpf = load_len_prefix_parser();
	ASSERT_LE(0, self->bpf);
	self->conn = socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP);
	ASSERT_LE(0, self->conn);
	inet_pton(AF_INET, TWO_PATH_ADDR1_SERVER, &addr.sin_addr);
	ASSERT_EQ(0, connect(self->conn, (struct sockaddr *)&addr, sizeof(addr)));
}

FIXTURE_TEARDOWN(two_paths)
{
	int status;

	if (is_c_provider())
		return;
	close(self->kcm);
	if (self->conn >= 0)
		close(self->conn);
	if (self->server > 0) {
		kill(self->server, SIGTERM);
		waitpid(self->server, &status, 0);
	}
	close(self->bpf);
	two_path_teardown(&self->net);
}

/* Waits until the connection has its second subflow (the server announces path 2). */
static int wait_second_subflow(int fd)
{
	for (int i = 0; i < 400; i++) {
		if (mptcp_subflow_count(fd) >= 1)
			return 0;
		usleep(50000);
	}
	return -1;
}

/* Sends messages @from..@to-1 through the multiplexor and checks each echo. */
static int echo_round(int kcm, unsigned int from, unsigned int to)
{
	for (unsigned int i = from; i < to; i++) {
		size_t n = make_frame(buf, i, 100 + i % 3000);

		if (send(kcm, buf, n, 0) != (ssize_t)n)
			return -1;
		if (wait_readable(kcm, 60000) != 1)
			return -2;
		if (recv(kcm, buf, sizeof(buf), 0) != (ssize_t)n || !check_frame(buf, n, i))
			return -3;
	}
	return 0;
}

/* Messages keep flowing, in both directions, when the first path goes down. */
TEST_F_TIMEOUT(two_paths, first_path_down, 300)
{
	char text[4096];

	ASSERT_EQ(0, wait_second_subflow(self->conn));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->conn, self->bpf));
	ASSERT_EQ(0, echo_round(self->kcm, 0, 200));
	ASSERT_EQ(0, link_set_up(TWO_PATH_DEV1_CLIENT, false));
	ASSERT_EQ(0, echo_round(self->kcm, 200, 400));
	ASSERT_LT(0, read_file("/proc/net/kcm", text, sizeof(text)));
	EXPECT_EQ(NULL, strstr(text, "RxStop")) TH_LOG("%s", text);
	EXPECT_NE(NULL, strstr(text, "MPTCP")) TH_LOG("%s", text);
	/* The path comes back and the second one goes: still flowing. */
	ASSERT_EQ(0, link_set_up(TWO_PATH_DEV1_CLIENT, true));
	ASSERT_EQ(0, link_set_up(TWO_PATH_DEV2_CLIENT, false));
	ASSERT_EQ(0, echo_round(self->kcm, 400, 500));
	EXPECT_EQ(0, kcm_unattach(self->kcm, self->conn));
}

/* A burst in flight while the path goes down: every message arrives once, whole, in order. */
TEST_F_TIMEOUT(two_paths, burst_across_path_loss, 300)
{
	const unsigned int count = 600;
	int sender;

	ASSERT_EQ(0, wait_second_subflow(self->conn));
	ASSERT_EQ(0, kcm_attach(self->kcm, self->conn, self->bpf));
	sender = fork();
	ASSERT_LE(0, sender);
	if (!sender) {
		for (unsigned int i = 0; i < count; i++) {
			size_t n = make_frame(buf, i, 1000 + i);

			if (send(self->kcm, buf, n, 0) != (ssize_t)n)
				_exit(1);
		}
		_exit(0);
	}
	for (unsigned int i = 0; i < count; i++) {
		ssize_t n;

		if (i == count / 4)
			ASSERT_EQ(0, link_set_up(TWO_PATH_DEV1_CLIENT, false));
		ASSERT_EQ(1, wait_readable(self->kcm, 60000)) TH_LOG("message %u", i);
		n = recv(self->kcm, buf, sizeof(buf), 0);
		ASSERT_EQ(1004 + i, n) TH_LOG("message %u", i);
		ASSERT_TRUE(check_frame(buf, n, i)) TH_LOG("message %u", i);
	}
	{
		int status;

		ASSERT_EQ(sender, waitpid(sender, &status, 0));
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
}

TEST_HARNESS_MAIN
