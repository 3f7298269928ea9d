// SPDX-License-Identifier: GPL-2.0
/*
 * Deterministic replays of the classes of bugs syzbot found in net/kcm:
 * release racing unattach and the transmit work, parent and clone closed in
 * either order with messages queued, messages held by the multiplexor after
 * their socket closed, two threads building one SOCK_SEQPACKET
 * message (CVE-2024-44946), a copy fault in the middle of a message, requeue
 * (KCM_RECV_DISABLE) racing recv, splice with SPLICE_F_NONBLOCK taken as
 * MSG_PEEK, unattach while a message is being written, a sender killed while
 * it waits for buffer space, and a psock failing in the middle of a message.
 * Each asserts the behaviour, and the run's kernel log must stay clean.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "kcm_util.h"

/* Small buffers on the connection, so that a large send blocks half way. */
static void conn_shrink(struct kcm_conn *c)
{
	int small = 16384;

	setsockopt(c->tcp[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(c->tcp[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
}

struct race {
	pthread_barrier_t *go;
	int fd, other;
	int result;
};

static void *race_close(void *arg)
{
	struct race *r = arg;

	pthread_barrier_wait(r->go);
	r->result = close(r->fd);
	return NULL;
}

static void *race_unattach(void *arg)
{
	struct race *r = arg;

	pthread_barrier_wait(r->go);
	r->result = kcm_unattach(r->fd, r->other);
	return NULL;
}

/* Closing KCM sockets and TCP sockets while another thread unattaches. */
STATELESS_FIXTURE(slow);

TEST_F_TIMEOUT(slow, release_races_unattach, 600)
{
	for (int i = 0; i < 60; i++) {
		pthread_barrier_t go;
		struct race a = { .go = &go }, b = { .go = &go };
		pthread_t ta, tb;
		struct kcm_conn c;
		int clone;
		unsigned char buf[64];
		size_t n = make_frame(buf, i, 20);

		ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_len_prefix_parser()));
		clone = kcm_clone(c.kcm);
		ASSERT_LE(0, clone);
		/* A message in flight too. */
		ASSERT_EQ(0, write_all(c.tcp[1], buf, n));
		pthread_barrier_init(&go, NULL, 2);
		a.fd = (i & 1) ? c.kcm : c.tcp[0];
		b.fd = clone;
		b.other = c.tcp[0];
		pthread_create(&ta, NULL, race_close, &a);
		pthread_create(&tb, NULL, race_unattach, &b);
		pthread_join(ta, NULL);
		pthread_join(tb, NULL);
		EXPECT_EQ(0, a.result);
		/* Unattach finds the socket, or its fd is already gone (EBADF), or
		 * (closing the KCM socket) unattach found it first or the close did. */
		EXPECT_TRUE(b.result == 0 || b.result == -EBADF || b.result == -ENOENT)
			TH_LOG("unattach: %d", b.result);
		close(clone);
		if (i & 1)
			close(c.tcp[0]);
		else
			close(c.kcm);
		close(c.tcp[1]);
		close(c.bpf);
		pthread_barrier_destroy(&go);
		if (i % 10 == 0)
			TH_LOG("round %d", i);
	}
}

/* The peer writes frames 0..n-1 with payloads of 100 + i bytes. */
static int write_numbered(int peer, int n)
{
	unsigned char buf[256];

	for (int i = 0; i < n; i++)
		if (write_all(peer, buf, make_frame(buf, i, 100 + i)))
			return -1;
	return 0;
}

/* Frames 0..n-1 arrive on @fd, in order and intact: -1 when one does not. */
static int read_numbered(int fd, int n)
{
	unsigned char out[256];

	for (int i = 0; i < n; i++) {
		ssize_t len;

		if (wait_readable(fd, 5000) != 1)
			return -1;
		len = recv(fd, out, sizeof(out), MSG_DONTWAIT);
		if (len != 104 + i || !check_frame(out, len, i))
			return -1;
	}
	return 0;
}

/* Messages queued on a socket that closes move to its siblings, in either close order. */
TEST(parent_and_clone_close_in_either_order)
{
	for (int order = 0; order < 2; order++) {
		struct kcm_conn c;
		int clone, survivor, closing;

		ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_len_prefix_parser()));
		clone = kcm_clone(c.kcm);
		ASSERT_LE(0, clone);
		closing = order ? clone : c.kcm;
		survivor = order ? c.kcm : clone;
		/* Queue everything on the socket about to close. */
		ASSERT_EQ(0, kcm_set_recv_disabled(survivor, 1));
		ASSERT_EQ(0, write_numbered(c.tcp[1], 5));
		usleep(300000);
		ASSERT_EQ(0, kcm_set_recv_disabled(survivor, 0));
		close(closing);
		EXPECT_EQ(0, read_numbered(survivor, 5)) TH_LOG("the messages did not move");
		close(survivor);
		close(c.tcp[0]);
		close(c.tcp[1]);
		close(c.bpf);
	}
}

/*
 * Messages queued on a socket that closes while no other member can take
 * them are held by the multiplexor; they must not stay charged to the closed
 * socket (found by kcm_fuzz: sock_rfree on the freed sock when they moved on).
 */
TEST(held_messages_outlive_their_closed_socket)
{
	struct kcm_conn c;
	int clone;

	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_len_prefix_parser()));
	clone = kcm_clone(c.kcm);
	ASSERT_LE(0, clone);
	ASSERT_EQ(0, kcm_set_recv_disabled(clone, 1));
	ASSERT_EQ(0, write_numbered(c.tcp[1], 5));
	usleep(300000);
	/* The messages queued on c.kcm have nowhere to go: the multiplexor holds them. */
	close(c.kcm);
	usleep(100000);
	ASSERT_EQ(0, kcm_set_recv_disabled(clone, 0));
	EXPECT_EQ(0, read_numbered(clone, 5)) TH_LOG("the held messages did not come");
	close(clone);
	close(c.tcp[0]);
	close(c.tcp[1]);
	close(c.bpf);
}

struct builder {
	int fd, id, parts;
};

/* Sends parts of 100 bytes of one value; every fifth ends the message. */
static void *build_parts(void *arg)
{
	struct builder *b = arg;
	unsigned char part[100];

	memset(part, 'A' + b->id, sizeof(part));
	for (int i = 1; i <= b->parts; i++)
		if (send(b->fd, part, sizeof(part), i % 5 ? 0 : MSG_EOR) != sizeof(part))
			return (void *)1;
	return NULL;
}

/*
 * CVE-2024-44946: two threads build one SOCK_SEQPACKET message at once. Each
 * send is appended whole; every byte sent reaches the peer once.
 */
TEST(two_threads_build_one_seqpacket_message)
{
	struct kcm_conn c;
	pthread_t t[2];
	struct builder b[2];
	unsigned char *stream = malloc(1 << 20);
	size_t have = 0, parts = 0;
	void *ret;

	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_SEQPACKET, load_len_prefix_parser()));
	for (int i = 0; i < 2; i++) {
		b[i] = (struct builder){ .fd = c.kcm, .id = i, .parts = 400 };
		pthread_create(&t[i], NULL, build_parts, &b[i]);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], &ret);
		EXPECT_EQ(NULL, ret);
	}
	/* 800 parts of 100 bytes, no framing of their own: exactly 80000 bytes on the wire. */
	while (have < 80000) {
		struct pollfd p = { .fd = c.tcp[1], .events = POLLIN };
		ssize_t n;

		ASSERT_EQ(1, poll(&p, 1, 5000)) TH_LOG("%zu of 80000 bytes", have);
		n = read(c.tcp[1], stream + have, (1 << 20) - have);
		ASSERT_LT(0, n);
		have += n;
	}
	usleep(100000);
	EXPECT_EQ(-1, recv(c.tcp[1], stream + have, 1, MSG_DONTWAIT));
	ASSERT_EQ(80000, have);
	/* Every 100-byte block is one thread's part, never a mix. */
	for (size_t i = 0; i < have; i += 100) {
		size_t same = 1;

		while (same < 100 && stream[i + same] == stream[i])
			same++;
		EXPECT_EQ(100, same) TH_LOG("part at %zu mixed", i);
		parts++;
	}
	EXPECT_EQ(800, parts);
	free(stream);
	kcm_conn_close(&c);
}

/* A bad user pointer in the middle of a message: EFAULT, the message is as before. */
TEST(copy_fault_in_the_middle_of_a_message)
{
	SKIP_ON_C("after the copy fault nothing more arrives (the test times out)");
	for (int type = SOCK_DGRAM; type <= SOCK_SEQPACKET; type += SOCK_SEQPACKET - SOCK_DGRAM) {
		struct kcm_conn c;
		unsigned char good[200], out[400];
		unsigned char *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct iovec iov[2] = { { good + 4, 50 }, { page, 50 } };
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
		int more = type == SOCK_DGRAM ? MSG_MORE : 0;
		int end = type == SOCK_SEQPACKET ? MSG_EOR : 0;
		size_t n = make_frame(good, 7, 150);

		ASSERT_NE(MAP_FAILED, page);
		ASSERT_EQ(0, kcm_conn_open(&c, type, load_len_prefix_parser()));
		/* First part of the message. */
		ASSERT_EQ(54, send(c.kcm, good, 54, more));
		/* A part whose second half faults, then one that ends the message. */
		errno = 0;
		EXPECT_EQ(-1, sendmsg(c.kcm, &msg, more));
		EXPECT_EQ(EFAULT, errno);
		errno = 0;
		iov[0].iov_base = good + 54;
		iov[0].iov_len = n - 54;
		iov[1].iov_len = 1;
		EXPECT_EQ(-1, sendmsg(c.kcm, &msg, end));
		EXPECT_EQ(EFAULT, errno);
		/* The rest, correctly: the peer gets exactly the frame. */
		ASSERT_EQ(n - 54, send(c.kcm, good + 54, n - 54, end));
		ASSERT_EQ(0, read_all(c.tcp[1], out, n));
		EXPECT_TRUE(check_frame(out, n, 7));
		usleep(100000);
		EXPECT_EQ(-1, recv(c.tcp[1], out, 1, MSG_DONTWAIT));

		/* Receive into a bad buffer: EFAULT and the message stays queued. */
		ASSERT_EQ(0, write_all(c.tcp[1], good, n));
		ASSERT_EQ(1, wait_readable(c.kcm, 5000));
		errno = 0;
		EXPECT_EQ(-1, recv(c.kcm, page, 200, 0));
		EXPECT_EQ(EFAULT, errno);
		EXPECT_EQ(n, recv(c.kcm, out, sizeof(out), MSG_DONTWAIT));
		EXPECT_TRUE(check_frame(out, n, 7));
		munmap(page, 4096);
		kcm_conn_close(&c);
	}
}

struct toggler {
	int fd, rounds;
	volatile int done;
};

/*
 * Each toggle moves the socket's whole queue (thousands of messages at first)
 * under the multiplexor's lock: a short pause between toggles lets the reader
 * in, so that both run interleaved until the reader is done.
 */
static void *toggle(void *arg)
{
	struct toggler *t = arg;

	for (int i = 0; i < t->rounds && !t->done; i++) {
		kcm_set_recv_disabled(t->fd, 1);
		kcm_set_recv_disabled(t->fd, 0);
		usleep(100);
	}
	return NULL;
}

/* KCM_RECV_DISABLE moving a queue while its socket receives: each message once. */
TEST(requeue_races_recv)
{
	struct kcm_conn c;
	struct toggler tg;
	pthread_t t;
	int other, got = 0;
	static unsigned char seen[3000];
	unsigned char buf[128];

	SKIP_ON_C("a reader gets a message with an id that was never sent");
	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_len_prefix_parser()));
	other = kcm_clone(c.kcm);
	ASSERT_LE(0, other);
	tg = (struct toggler){ .fd = c.kcm, .rounds = 20000 };
	pthread_create(&t, NULL, toggle, &tg);
	for (int i = 0; i < 3000; i++) {
		size_t n = make_frame(buf, i, 4 + i % 50);

		memcpy(buf + 4, &i, sizeof(i));
		ASSERT_EQ(0, write_all(c.tcp[1], buf, n));
	}
	while (got < 3000) {
		struct pollfd p[2] = { { .fd = c.kcm, .events = POLLIN },
				       { .fd = other, .events = POLLIN } };

		ASSERT_LT(0, poll(p, 2, 5000)) TH_LOG("%d of 3000", got);
		for (int k = 0; k < 2; k++) {
			ssize_t n = recv(p[k].fd, buf, sizeof(buf), MSG_DONTWAIT);
			int id;

			if (n < 0)
				continue;
			ASSERT_LE(8, n);
			memcpy(&id, buf + 4, sizeof(id));
			ASSERT_TRUE(id >= 0 && id < 3000);
			EXPECT_EQ(0, seen[id]) TH_LOG("message %d twice", id);
			seen[id] = 1;
			got++;
		}
	}
	tg.done = 1;
	pthread_join(t, NULL);
	EXPECT_EQ(-1, recv(c.kcm, buf, sizeof(buf), MSG_DONTWAIT));
	EXPECT_EQ(-1, recv(other, buf, sizeof(buf), MSG_DONTWAIT));
	close(other);
	kcm_conn_close(&c);
}

/* SPLICE_F_NONBLOCK consumes like a blocking splice (net/kcm once peeked instead). */
TEST(nonblocking_splice_consumes)
{
	struct kcm_conn c;
	unsigned char buf[300], out[300];
	int pipefd[2];
	size_t n = make_frame(buf, 3, 200);

	SKIP_ON_C("the second non-blocking splice of a queued message fails with EAGAIN");
	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_SEQPACKET, load_len_prefix_parser()));
	ASSERT_EQ(0, pipe(pipefd));
	ASSERT_EQ(0, write_all(c.tcp[1], buf, n));
	ASSERT_EQ(1, wait_readable(c.kcm, 5000));
	ASSERT_EQ(100, splice(c.kcm, NULL, pipefd[1], NULL, 100, SPLICE_F_NONBLOCK));
	ASSERT_EQ(n - 100, splice(c.kcm, NULL, pipefd[1], NULL, 1000, SPLICE_F_NONBLOCK));
	ASSERT_EQ(0, read_all(pipefd[0], out, n));
	EXPECT_TRUE(check_frame(out, n, 3));
	close(pipefd[0]);
	close(pipefd[1]);
	kcm_conn_close(&c);
}

/* Unattach while a message is being written: the socket comes back at a message end. */
TEST(unattach_waits_for_the_message_being_written)
{
	static unsigned char big[1 << 21], out[1 << 21];
	struct kcm_conn c;
	int status;
	size_t n = make_frame(big, 8, sizeof(big) - 4);
	pid_t pid;

	SKIP_ON_C("leaves part of the message on the stream");
	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_len_prefix_parser()));
	conn_shrink(&c);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0)
		_exit(send(c.kcm, big, n, 0) == (ssize_t)n ? 0 : 1);
	usleep(500000);
	ASSERT_EQ(0, waitpid(pid, &status, WNOHANG)) TH_LOG("the send did not block");
	pid_t reader = fork();

	ASSERT_LE(0, reader);
	if (reader == 0) {
		/* Starts reading a moment after the unattach began. */
		usleep(300000);
		if (read_all(c.tcp[1], out, n) || !check_frame(out, n, 8))
			_exit(1);
		/* Then our own bytes, right after the message. */
		if (read_all(c.tcp[1], out, 5) || memcmp(out, "mine!", 5))
			_exit(2);
		_exit(0);
	}
	ASSERT_EQ(0, kcm_unattach(c.kcm, c.tcp[0]));
	/* The message is out whole before unattach returned. */
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_EQ(0, write_all(c.tcp[0], "mine!", 5));
	ASSERT_EQ(reader, waitpid(reader, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		TH_LOG("peer reader exit %d", WEXITSTATUS(status));
	kcm_conn_close(&c);
}

/* Waits up to @ms for @pid to end; its status, or -1 if it is still running. */
static int wait_exit(pid_t pid, int ms)
{
	int status;

	for (int i = 0; i < ms / 10; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(10000);
	}
	return -1;
}

/*
 * A child that sends the @len bytes of @buf as one message on @kcm, without its
 * copy of the peer's end @peer: it exits 0 when the send took them all.
 */
static pid_t fork_sender(int kcm, int peer, const void *buf, size_t len)
{
	pid_t pid = fork();

	if (pid == 0) {
		close(peer);
		_exit(send(kcm, buf, len, 0) == (ssize_t)len ? 0 : 1);
	}
	return pid;
}

/*
 * Senders killed while they wait: one in the middle of a message it is
 * writing (the stream cannot take more), one before its message's first byte
 * (the only psock is busy with another message). The killed senders end at
 * once. The one killed before its first byte leaves nothing on the stream,
 * and the other message still goes out whole; the one killed mid-message
 * releases the last reference to its socket, which unattaches the
 * connection, and the connection can be attached again.
 */
TEST(killed_while_waiting_for_buffer_space)
{
	static unsigned char big[1 << 21], out[1 << 21];
	unsigned char small[100];
	size_t n = make_frame(big, 1, sizeof(big) - 4), m = make_frame(small, 2, 50);
	struct kcm_conn c;
	int status, kcm;
	pid_t writer, waiter;

	SKIP_ON_C("a sender queues its message on the KCM socket and does not wait for room");
	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_len_prefix_parser()));
	conn_shrink(&c);
	writer = fork_sender(c.kcm, c.tcp[1], big, n);
	ASSERT_LE(0, writer);
	usleep(300000);
	waiter = fork_sender(c.kcm, c.tcp[1], small, m);
	ASSERT_LE(0, waiter);
	usleep(300000);
	ASSERT_EQ(-1, wait_exit(writer, 0)) TH_LOG("the first send did not block");
	ASSERT_EQ(-1, wait_exit(waiter, 0)) TH_LOG("the second send did not wait");
	ASSERT_EQ(0, kill(waiter, SIGKILL));
	status = wait_exit(waiter, 10000);
	ASSERT_NE(-1, status) TH_LOG("the killed sender did not end");
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* The big message whole, then nothing: the killed sender wrote no byte. */
	ASSERT_EQ(0, read_all(c.tcp[1], out, n));
	EXPECT_TRUE(check_frame(out, n, 1));
	status = wait_exit(writer, 10000);
	EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	usleep(200000);
	EXPECT_EQ(-1, recv(c.tcp[1], out, 1, MSG_DONTWAIT));

	/* Killed mid-message, holding the last reference to the socket. */
	writer = fork_sender(c.kcm, c.tcp[1], big, n);
	ASSERT_LE(0, writer);
	usleep(500000);
	ASSERT_EQ(-1, wait_exit(writer, 0)) TH_LOG("the send did not block");
	close(c.kcm);
	ASSERT_EQ(0, kill(writer, SIGKILL));
	status = wait_exit(writer, 10000);
	ASSERT_NE(-1, status) TH_LOG("the killed sender did not end");
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* Its socket is gone, so the connection is free for another multiplexor. */
	kcm = socket(AF_KCM, SOCK_DGRAM, 0);
	ASSERT_LE(0, kcm);
	EXPECT_EQ(0, kcm_attach(kcm, c.tcp[0], c.bpf));
	close(kcm);
	close(c.tcp[0]);
	close(c.tcp[1]);
	close(c.bpf);
}

/*
 * A second unattach of a socket while the first waits for the message being
 * written on it: EALREADY, the unattach under way (net/kcm's errno for it);
 * once the first has returned, ENOENT.
 */
TEST(second_unattach_while_the_first_waits)
{
	static unsigned char big[1 << 21], out[1 << 21];
	size_t n = make_frame(big, 9, sizeof(big) - 4);
	pthread_barrier_t go;
	struct race first = { .go = &go, .result = 1 };
	struct kcm_conn c;
	pthread_t thread;
	int status;
	pid_t writer;

	SKIP_ON_C("unattach does not wait for the message being written");
	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_len_prefix_parser()));
	conn_shrink(&c);
	writer = fork_sender(c.kcm, c.tcp[1], big, n);
	ASSERT_LE(0, writer);
	usleep(500000);
	ASSERT_EQ(-1, wait_exit(writer, 0)) TH_LOG("the send did not block");
	pthread_barrier_init(&go, NULL, 1);
	first.fd = c.kcm;
	first.other = c.tcp[0];
	ASSERT_EQ(0, pthread_create(&thread, NULL, race_unattach, &first));
	usleep(300000);
	EXPECT_EQ(1, __atomic_load_n(&first.result, __ATOMIC_SEQ_CST))
		TH_LOG("the first unattach did not wait");
	EXPECT_EQ(-EALREADY, kcm_unattach(c.kcm, c.tcp[0]));
	/* The peer reads: the message ends, and with it the first unattach. */
	ASSERT_EQ(0, read_all(c.tcp[1], out, n));
	EXPECT_TRUE(check_frame(out, n, 9));
	ASSERT_EQ(0, pthread_join(thread, NULL));
	EXPECT_EQ(0, first.result);
	EXPECT_EQ(-ENOENT, kcm_unattach(c.kcm, c.tcp[0]));
	status = wait_exit(writer, 10000);
	EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	pthread_barrier_destroy(&go);
	kcm_conn_close(&c);
}

/*
 * A connection reset while a message is being written on it: the message
 * goes again, whole, on another psock of the multiplexor, and the send
 * succeeds.
 */
TEST(psock_failing_mid_message_resends_elsewhere)
{
	static unsigned char big[1 << 21], out[1 << 21];
	size_t n = make_frame(big, 5, sizeof(big) - 4);
	struct linger reset = { .l_onoff = 1, .l_linger = 0 };
	struct kcm_conn c;
	int other[2], failed, good, status, small = 16384, queued[2] = { 0, 0 };
	pid_t pid;

	SKIP_ON_C("the message being sent when its TCP socket fails is lost (the test times out)");
	ASSERT_EQ(0, kcm_conn_open(&c, SOCK_DGRAM, load_len_prefix_parser()));
	conn_shrink(&c);
	ASSERT_EQ(0, tcp_pair(AF_INET, other));
	ASSERT_EQ(0, setsockopt(other[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
	ASSERT_EQ(0, setsockopt(other[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)));
	ASSERT_EQ(0, kcm_attach(c.kcm, other[0], c.bpf));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		/* The peers are the parent's alone: its close resets them. */
		close(c.tcp[1]);
		close(other[1]);
		_exit(send(c.kcm, big, n, 0) == (ssize_t)n ? 0 : 1);
	}
	usleep(500000);
	ASSERT_EQ(-1, wait_exit(pid, 0)) TH_LOG("the send did not block");
	/* The peer that has bytes is the one being written: reset it. */
	ioctl(c.tcp[1], FIONREAD, &queued[0]);
	ioctl(other[1], FIONREAD, &queued[1]);
	ASSERT_TRUE((queued[0] > 0) != (queued[1] > 0))
		TH_LOG("queued %d and %d", queued[0], queued[1]);
	failed = queued[0] > 0 ? c.tcp[1] : other[1];
	good = queued[0] > 0 ? other[1] : c.tcp[1];
	ASSERT_EQ(0, setsockopt(failed, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)));
	close(failed);
	/* The whole message, on the other connection. */
	ASSERT_EQ(0, read_all(good, out, n));
	EXPECT_TRUE(check_frame(out, n, 5));
	status = wait_exit(pid, 10000);
	ASSERT_NE(-1, status) TH_LOG("the send never ended");
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(good);
	close(c.kcm);
	close(c.tcp[0]);
	close(other[0]);
	close(c.bpf);
}

TEST_HARNESS_MAIN
