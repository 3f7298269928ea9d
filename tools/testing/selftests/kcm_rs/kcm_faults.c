// SPDX-License-Identifier: GPL-2.0
/*
 * Allocation failures: every allocation made by a KCM system call fails in
 * turn (fail-nth, with failslab and fail_page_alloc taking GFP_KERNEL too).
 * Each call must succeed or fail with a clean errno, and leave the socket
 * usable; the VM runner's kmemleak, KASAN and lockdep checks then see that
 * nothing leaked or broke. Needs CONFIG_FAULT_INJECTION, FAILSLAB and debugfs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "kcm_util.h"

static int write_str(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY), ok;

	if (fd < 0)
		return -1;
	ok = write(fd, value, strlen(value)) == (ssize_t)strlen(value);
	close(fd);
	return ok ? 0 : -1;
}

/* Arms fail-nth of this thread: the n-th fault-injection point fails. */
static int arm(int n)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%d", n);
	return write_str("/proc/thread-self/fail-nth", buf);
}

/* Disarms it; true when the armed failure was injected. */
static int injected(void)
{
	char buf[16] = "";
	int fd = open("/proc/thread-self/fail-nth", O_RDWR), n;

	n = read(fd, buf, sizeof(buf) - 1);
	write(fd, "0", 1);
	close(fd);
	return n > 0 && atoi(buf) == 0;
}

static int clean_errno(int e)
{
	return e == ENOMEM || e == ENOBUFS || e == ENFILE || e == EMFILE || e == EAGAIN;
}

/* Writes @value to @file of the fault-injection attributes @attr (debugfs). */
static int fault_attr_write(const char *attr, const char *file, const char *value)
{
	char path[96];

	snprintf(path, sizeof(path), "/sys/kernel/debug/%s/%s", attr, file);
	return write_str(path, value);
}

static const char *const fault_attrs[] = { "failslab", "fail_page_alloc" };

/*
 * Fails the given percentage of the allocations that may not sleep (GFP_ATOMIC:
 * softirq), on every task and in interrupt context; 0 stops it. The
 * probability is set last when starting and first when stopping (and until it
 * takes), so that sleeping allocations, fork's among them, never fail.
 */
static int fail_atomic_allocations(int percent)
{
	char probability[16];
	int ret = 0;

	snprintf(probability, sizeof(probability), "%d", percent);
	for (int i = 0; i < 2; i++) {
		for (int tries = 0; !percent && tries < 100; tries++)
			if (!fault_attr_write(fault_attrs[i], "probability", "0"))
				break;
		ret |= fault_attr_write(fault_attrs[i], "ignore-gfp-wait", "Y");
		ret |= fault_attr_write(fault_attrs[i], "interval", "1");
		ret |= fault_attr_write(fault_attrs[i], "times", "-1");
		if (percent)
			ret |= fault_attr_write(fault_attrs[i], "probability", probability);
	}
	return ret;
}

FIXTURE(faults)
{
	int prog;
};

FIXTURE_SETUP(faults)
{
	if (access("/proc/thread-self/fail-nth", F_OK))
		SKIP(return, "no fail-nth (CONFIG_FAULT_INJECTION)");
	/* Fail GFP_KERNEL allocations too, and quietly. */
	for (int i = 0; i < 2; i++) {
		fault_attr_write(fault_attrs[i], "ignore-gfp-wait", "N");
		fault_attr_write(fault_attrs[i], "verbose", "0");
	}
	self->prog = load_len_prefix_parser();
	ASSERT_LE(0, self->prog);
}

FIXTURE_TEARDOWN(faults)
{
	/* Whatever a test left armed. */
	fail_atomic_allocations(0);
	close(self->prog);
}

/*
 * Runs op with the 1st, 2nd, ... fault-injection point failing until a run
 * with no failure left to inject; op returns 0 or -errno.
 */
#define EVERY_FAILURE(op, cleanup)						\
	for (int n = 1, done = 0; !done && n < 2000; n++) {			\
		int ret, hit;							\
									\
		ASSERT_EQ(0, arm(n));						\
		ret = (op);							\
		hit = injected();						\
		if (!hit) {							\
			ASSERT_EQ(0, ret) TH_LOG("without a failure: %d", ret);	\
			done = 1;						\
		} else {							\
			ASSERT_TRUE(ret == 0 || clean_errno(-ret))		\
				TH_LOG("failure %d gave %d", n, ret);		\
		}								\
		cleanup;							\
	}

static int op_socket(int *fd, int type)
{
	*fd = socket(AF_KCM, type, 0);
	return *fd < 0 ? -errno : 0;
}

static int op_clone(int kcm, int *fd)
{
	*fd = kcm_clone(kcm);
	return *fd < 0 ? -errno : 0;
}

TEST_F(faults, socket)
{
	int fd = -1;

	EVERY_FAILURE(op_socket(&fd, SOCK_SEQPACKET), if (fd >= 0) {
		/* A socket that was made works. */
		ASSERT_EQ(0, kcm_recv_disabled(fd));
		close(fd);
	});
}

TEST_F(faults, clone)
{
	int kcm = socket(AF_KCM, SOCK_DGRAM, 0), fd = -1;

	ASSERT_LE(0, kcm);
	EVERY_FAILURE(op_clone(kcm, &fd), if (fd >= 0) close(fd));
	/* The original is unharmed. */
	fd = kcm_clone(kcm);
	ASSERT_LE(0, fd);
	close(fd);
	close(kcm);
}

TEST_F(faults, attach)
{
	int kcm = socket(AF_KCM, SOCK_DGRAM, 0), pair[2];

	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, tcp_pair(AF_INET, pair));
	EVERY_FAILURE(kcm_attach(kcm, pair[0], self->prog), ({
		/* Attached or not, the socket is left in a state unattach can tell. */
		int un = kcm_unattach(kcm, pair[0]);

		ASSERT_TRUE(un == 0 || un == -ENOENT);
		close(pair[0]);
		close(pair[1]);
		ASSERT_EQ(0, tcp_pair(AF_INET, pair));
	}));
	close(pair[0]);
	close(pair[1]);
	close(kcm);
}

TEST_F(faults, send_and_receive)
{
	int kcm = socket(AF_KCM, SOCK_SEQPACKET, 0), pair[2], seq = 0;
	unsigned char buf[3000];
	struct timeval tv = { .tv_sec = 5 };

	SKIP_ON_C("after a send failed by an injected fault, the next frame on the stream is not the next message sent");
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, tcp_pair(AF_INET, pair));
	ASSERT_EQ(0, kcm_attach(kcm, pair[0], self->prog));
	setsockopt(pair[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(kcm, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	EVERY_FAILURE(({
		size_t len = make_frame(buf, seq, 2000);
		ssize_t n = send(kcm, buf, len, MSG_EOR);
		n < 0 ? -errno : (n == (ssize_t)len ? 0 : -EIO);
	}), ({
		/* A message that went out went out whole; one that failed left nothing. */
		unsigned char in[3000];
		size_t len = 2004;

		if (recv(pair[1], in, len, MSG_DONTWAIT | MSG_PEEK) > 0) {
			ASSERT_EQ(0, read_all(pair[1], in, len));
			ASSERT_TRUE(check_frame(in, len, seq));
			seq++;
		}
	}));
	/* And the other way, after all that. */
	{
		size_t len = make_frame(buf, 77, 100);

		ASSERT_EQ(0, write_all(pair[1], buf, len));
		ASSERT_EQ((ssize_t)len, recv(kcm, buf, sizeof(buf), 0));
		ASSERT_TRUE(check_frame(buf, len, 77));
	}
	close(kcm);
	close(pair[0]);
	close(pair[1]);
}

/* Fault points of unshare(CLONE_NEWNET) and socket(AF_KCM) in a child, or -1. */
static int count_namespace_fault_points(void)
{
	int pipefd[2], points = -1, status;
	pid_t pid;

	if (pipe(pipefd))
		return -1;
	pid = fork();
	if (pid == 0) {
		char buf[16] = "";
		int fd, n;

		arm(1000000);
		if (unshare(CLONE_NEWNET) || socket(AF_KCM, SOCK_DGRAM, 0) < 0)
			_exit(1);
		fd = open("/proc/thread-self/fail-nth", O_RDWR);
		n = read(fd, buf, sizeof(buf) - 1);
		write(fd, "0", 1);
		n = n > 0 ? 1000000 - atoi(buf) : -1;
		write(pipefd[1], &n, sizeof(n));
		_exit(0);
	}
	close(pipefd[1]);
	if (read(pipefd[0], &points, sizeof(points)) != sizeof(points))
		points = -1;
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	return points;
}

/*
 * A new namespace: kcm-rs's pernet init (its state and /proc entries) runs
 * last, so the last 40 fault points (and the first socket of the namespace)
 * are each failed, and every 37th point before them.
 */
TEST_F_TIMEOUT(faults, new_namespace, 600)
{
	int points = count_namespace_fault_points();

	ASSERT_LT(40, points);
	for (int n = 1; n <= points + 1; n += n < points - 40 ? 37 : 1) {
		pid_t pid = fork();
		int status;

		ASSERT_LE(0, pid);
		if (pid == 0) {
			int fd, hit;

			if (arm(n))
				_exit(100);
			/*
			 * Any failure of the namespace's set-up (core code has its
			 * own errnos) must leave nothing behind; kmemleak judges.
			 */
			if (unshare(CLONE_NEWNET))
				_exit(injected() ? 0 : 101);
			fd = socket(AF_KCM, SOCK_DGRAM, 0);
			hit = injected();
			if (fd < 0)
				_exit(hit && clean_errno(errno) ? 0 : 102);
			/* A namespace that was made has a working multiplexor. */
			_exit(kcm_clone(fd) >= 0 ? 0 : 103);
		}
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(0, WEXITSTATUS(status)) TH_LOG("failure %d of %d", n, points);
	}
}

/*
 * A TCP psock no task owns is read in softirq, where buffers come from
 * GFP_ATOMIC. When one cannot be had, the read must go on in process context
 * where it stopped: every message arrives, whole and in order (and goes back
 * out), and the stream is not broken (no error on the TCP socket). Messages of
 * 1 to 2999 bytes, so both copied and shared (>= 1 KiB) ones are assembled.
 */
TEST_F_TIMEOUT(faults, atomic_allocation_failures_lose_no_message, 300)
{
	enum { BATCHES = 150, PER_BATCH = 20 };
	static unsigned char buf[1 << 16];
	int kcm = socket(AF_KCM, SOCK_DGRAM, 0), pair[2], err = -1, failed = 0;
	socklen_t err_len = sizeof(err);
	unsigned int batch;

	SKIP_ON_C("a message is lost when atomic allocations fail");
	ASSERT_LE(0, kcm);
	ASSERT_EQ(0, tcp_pair(AF_INET, pair));
	ASSERT_EQ(0, kcm_attach(kcm, pair[0], self->prog));
	ASSERT_EQ(0, fail_atomic_allocations(20));
	for (batch = 0; batch < BATCHES; batch++) {
		size_t sizes[PER_BATCH];

		for (unsigned int i = 0; i < PER_BATCH; i++)
			sizes[i] = 1 + (batch * PER_BATCH + i) * 397 % 2999;
		failed = exchange_sizes(kcm, pair[1], sizes, PER_BATCH, buf, sizeof(buf));
		if (failed)
			break;
	}
	fail_atomic_allocations(0);
	EXPECT_EQ(0, failed) TH_LOG("batch %u: message %d is missing or wrong", batch, failed);
	ASSERT_EQ(0, getsockopt(pair[0], SOL_SOCKET, SO_ERROR, &err, &err_len));
	EXPECT_EQ(0, err) TH_LOG("the stream broke: %s", strerror(err));
	close(kcm);
	close(pair[0]);
	close(pair[1]);
}

TEST_HARNESS_MAIN
