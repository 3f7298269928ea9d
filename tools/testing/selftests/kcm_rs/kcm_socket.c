// SPDX-License-Identifier: GPL-2.0
/*
 * AF_KCM socket life cycle: creation, types and protocols, flags, clones,
 * SOL_KCM options, poll, release order, namespaces, module references.
 * Runs against kcm_rs.ko and against the in-tree kcm.ko (KCM_PROVIDER=rs|c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <poll.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/kcm.h>

#include "kselftest_harness.h"
#include "kcm_util.h"

TEST(create_dgram_and_seqpacket)
{
	int types[] = { SOCK_DGRAM, SOCK_SEQPACKET };

	for (int i = 0; i < 2; i++) {
		int fd = socket(AF_KCM, types[i], KCMPROTO_CONNECTED);

		ASSERT_LE(0, fd) TH_LOG("socket: %s", strerror(errno));
		EXPECT_EQ(types[i], sockopt_int(fd, SOL_SOCKET, SO_TYPE));
		EXPECT_EQ(AF_KCM, sockopt_int(fd, SOL_SOCKET, SO_DOMAIN));
		EXPECT_EQ(KCMPROTO_CONNECTED, sockopt_int(fd, SOL_SOCKET, SO_PROTOCOL));
		EXPECT_EQ(0, close(fd));
	}
}

TEST(other_types_are_esocktnosupport)
{
	int types[] = { SOCK_STREAM, SOCK_RAW, SOCK_RDM, SOCK_PACKET };

	for (int i = 0; i < 4; i++) {
		errno = 0;
		EXPECT_EQ(-1, socket(AF_KCM, types[i], KCMPROTO_CONNECTED));
		EXPECT_EQ(ESOCKTNOSUPPORT, errno) TH_LOG("type %d", types[i]);
	}
}

TEST(other_protocols_are_eprotonosupport)
{
	int protos[] = { 1, 6, 17, 255 };

	for (int i = 0; i < 4; i++) {
		errno = 0;
		EXPECT_EQ(-1, socket(AF_KCM, SOCK_DGRAM, protos[i]));
		EXPECT_EQ(EPROTONOSUPPORT, errno) TH_LOG("protocol %d", protos[i]);
		errno = 0;
		EXPECT_EQ(-1, socket(AF_KCM, SOCK_SEQPACKET, protos[i]));
		EXPECT_EQ(EPROTONOSUPPORT, errno);
	}
}

TEST(nonblock_and_cloexec_flags)
{
	int fd = socket(AF_KCM, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	ASSERT_LE(0, fd);
	EXPECT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
	EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);

	fd = socket(AF_KCM, SOCK_SEQPACKET, 0);
	ASSERT_LE(0, fd);
	EXPECT_FALSE(fcntl(fd, F_GETFL) & O_NONBLOCK);
	EXPECT_FALSE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

TEST(clone_same_type_no_cloexec)
{
	int types[] = { SOCK_DGRAM, SOCK_SEQPACKET };

	for (int i = 0; i < 2; i++) {
		int fd = socket(AF_KCM, types[i] | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		int cfd;

		ASSERT_LE(0, fd);
		cfd = kcm_clone(fd);
		ASSERT_LE(0, cfd) TH_LOG("clone: %s", strerror(errno));
		EXPECT_NE(fd, cfd);
		EXPECT_EQ(types[i], sockopt_int(cfd, SOL_SOCKET, SO_TYPE));
		EXPECT_EQ(AF_KCM, sockopt_int(cfd, SOL_SOCKET, SO_DOMAIN));
		EXPECT_FALSE(fcntl(cfd, F_GETFD) & FD_CLOEXEC);
		EXPECT_FALSE(fcntl(cfd, F_GETFL) & O_NONBLOCK);
		close(fd);
		close(cfd);
	}
}

TEST(clone_outlives_original)
{
	int fd = socket(AF_KCM, SOCK_DGRAM, 0);
	int c1, c2;

	ASSERT_LE(0, fd);
	c1 = kcm_clone(fd);
	ASSERT_LE(0, c1);
	ASSERT_EQ(0, close(fd));
	/* The clone still works and can itself be cloned. */
	EXPECT_EQ(0, kcm_recv_disabled(c1));
	c2 = kcm_clone(c1);
	ASSERT_LE(0, c2);
	ASSERT_EQ(0, close(c1));
	EXPECT_EQ(SOCK_DGRAM, sockopt_int(c2, SOL_SOCKET, SO_TYPE));
	EXPECT_EQ(0, kcm_set_recv_disabled(c2, 1));
	EXPECT_EQ(1, kcm_recv_disabled(c2));
	EXPECT_EQ(0, close(c2));
}

TEST(clone_bad_pointer_efault_no_fd_leak)
{
	int fd = socket(AF_KCM, SOCK_DGRAM, 0);
	int before, after;

	ASSERT_LE(0, fd);
	before = count_open_fds();
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, SIOCKCMCLONE, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, SIOCKCMCLONE, NULL));
	EXPECT_EQ(EFAULT, errno);
	after = count_open_fds();
	EXPECT_EQ(before, after);
	close(fd);
}

TEST(many_clones_release_in_any_order)
{
	enum { N = 64 };
	int fds[N];
	unsigned int seed = 1;

	fds[0] = socket(AF_KCM, SOCK_SEQPACKET, 0);
	ASSERT_LE(0, fds[0]);
	for (int i = 1; i < N; i++) {
		/* Clone from a random earlier member. */
		fds[i] = kcm_clone(fds[rand_r(&seed) % i]);
		ASSERT_LE(0, fds[i]);
	}
	/* Close in a shuffled order; the survivors keep working. */
	for (int i = N - 1; i > 0; i--) {
		int j = rand_r(&seed) % (i + 1), t = fds[i];

		fds[i] = fds[j];
		fds[j] = t;
	}
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(0, close(fds[i]));
		for (int k = i + 1; k < N; k += 7)
			ASSERT_EQ(0, kcm_recv_disabled(fds[k]));
	}
}

TEST(recv_disable_get_set)
{
	int fd = socket(AF_KCM, SOCK_DGRAM, 0);
	int cfd;

	ASSERT_LE(0, fd);
	cfd = kcm_clone(fd);
	ASSERT_LE(0, cfd);
	EXPECT_EQ(0, kcm_recv_disabled(fd));
	EXPECT_EQ(0, kcm_set_recv_disabled(fd, 1));
	EXPECT_EQ(1, kcm_recv_disabled(fd));
	/* The option is per socket, not per multiplexor. */
	EXPECT_EQ(0, kcm_recv_disabled(cfd));
	/* Any non-zero value is true. */
	EXPECT_EQ(0, kcm_set_recv_disabled(cfd, 42));
	EXPECT_EQ(1, kcm_recv_disabled(cfd));
	EXPECT_EQ(0, kcm_set_recv_disabled(fd, 0));
	EXPECT_EQ(0, kcm_recv_disabled(fd));
	close(fd);
	close(cfd);
}

TEST(sockopt_errors)
{
	int fd = socket(AF_KCM, SOCK_DGRAM, 0);
	int val = 1;
	socklen_t len;

	ASSERT_LE(0, fd);
	/* Unknown option names. */
	errno = 0;
	EXPECT_EQ(-1, setsockopt(fd, SOL_KCM, 2, &val, sizeof(val)));
	EXPECT_EQ(ENOPROTOOPT, errno);
	len = sizeof(val);
	errno = 0;
	EXPECT_EQ(-1, getsockopt(fd, SOL_KCM, 99, &val, &len));
	EXPECT_EQ(ENOPROTOOPT, errno);
	/* Another level that the socket core passes on to the protocol. */
	errno = 0;
	EXPECT_EQ(-1, setsockopt(fd, IPPROTO_IP, KCM_RECV_DISABLE, &val, sizeof(val)));
	EXPECT_EQ(ENOPROTOOPT, errno);
	len = sizeof(val);
	errno = 0;
	EXPECT_EQ(-1, getsockopt(fd, IPPROTO_TCP, KCM_RECV_DISABLE, &val, &len));
	EXPECT_EQ(ENOPROTOOPT, errno);
	/* Short option values. */
	errno = 0;
	EXPECT_EQ(-1, setsockopt(fd, SOL_KCM, KCM_RECV_DISABLE, &val, 2));
	EXPECT_EQ(EINVAL, errno);
	errno = 0;
	EXPECT_EQ(-1, setsockopt(fd, SOL_KCM, KCM_RECV_DISABLE, &val, 0));
	EXPECT_EQ(EINVAL, errno);
	/* Bad pointers. */
	errno = 0;
	EXPECT_EQ(-1, setsockopt(fd, SOL_KCM, KCM_RECV_DISABLE, (void *)8, 4));
	EXPECT_EQ(EFAULT, errno);
	len = sizeof(val);
	errno = 0;
	EXPECT_EQ(-1, getsockopt(fd, SOL_KCM, KCM_RECV_DISABLE, (void *)8, &len));
	EXPECT_EQ(EFAULT, errno);
	/* The value was not changed by any of the failures. */
	EXPECT_EQ(0, kcm_recv_disabled(fd));
	close(fd);
}

TEST(getsockopt_lengths)
{
	int fd = socket(AF_KCM, SOCK_DGRAM, 0);
	unsigned char buf[8];
	socklen_t len;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, kcm_set_recv_disabled(fd, 1));
	/* Longer buffers get sizeof(int). */
	memset(buf, 0xaa, sizeof(buf));
	len = sizeof(buf);
	ASSERT_EQ(0, getsockopt(fd, SOL_KCM, KCM_RECV_DISABLE, buf, &len));
	EXPECT_EQ(sizeof(int), len);
	EXPECT_EQ(1, *(int *)buf);
	EXPECT_EQ(0xaa, buf[4]);
	/* Shorter ones get the first bytes. */
	memset(buf, 0xaa, sizeof(buf));
	len = 1;
	ASSERT_EQ(0, getsockopt(fd, SOL_KCM, KCM_RECV_DISABLE, buf, &len));
	EXPECT_EQ(1, len);
	EXPECT_EQ(0xaa, buf[1]);
	/* A negative length is EINVAL. */
	len = (socklen_t)-1;
	errno = 0;
	EXPECT_EQ(-1, getsockopt(fd, SOL_KCM, KCM_RECV_DISABLE, buf, &len));
	EXPECT_EQ(EINVAL, errno);
	close(fd);
}

TEST(poll_idle_socket)
{
	int types[] = { SOCK_DGRAM, SOCK_SEQPACKET };

	for (int i = 0; i < 2; i++) {
		struct pollfd p = { .events = POLLIN | POLLOUT };

		p.fd = socket(AF_KCM, types[i], 0);
		ASSERT_LE(0, p.fd);
		ASSERT_EQ(1, poll(&p, 1, 0));
		/* Writable, nothing to read, not hung up, no error. */
		EXPECT_TRUE(p.revents & POLLOUT);
		EXPECT_FALSE(p.revents & (POLLIN | POLLHUP | POLLERR));
		close(p.fd);
	}
}

TEST(unattach_of_unattached_socket_is_enoent)
{
	int fd = socket(AF_KCM, SOCK_DGRAM, 0);
	int tcp = socket(AF_INET, SOCK_STREAM, 0);
	struct kcm_unattach un = { .fd = tcp };

	ASSERT_LE(0, fd);
	ASSERT_LE(0, tcp);
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, SIOCKCMUNATTACH, &un));
	EXPECT_EQ(ENOENT, errno);
	/* Not a socket at all. */
	un.fd = open("/proc/self/stat", O_RDONLY);
	ASSERT_LE(0, un.fd);
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, SIOCKCMUNATTACH, &un));
	EXPECT_EQ(ENOENT, errno);
	close(un.fd);
	/* Not a descriptor. */
	un.fd = 9999;
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, SIOCKCMUNATTACH, &un));
	EXPECT_EQ(ENOENT, errno);
	close(tcp);
	close(fd);
}

TEST(ioctl_bad_argument_pointers_efault)
{
	int fd = socket(AF_KCM, SOCK_DGRAM, 0);

	ASSERT_LE(0, fd);
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, SIOCKCMATTACH, NULL));
	EXPECT_EQ(EFAULT, errno);
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, SIOCKCMUNATTACH, (void *)16));
	EXPECT_EQ(EFAULT, errno);
	close(fd);
}

TEST(unknown_ioctl)
{
	int fd = socket(AF_KCM, SOCK_DGRAM, 0);
	int arg = 0;

	ASSERT_LE(0, fd);
	errno = 0;
	EXPECT_EQ(-1, ioctl(fd, SIOCPROTOPRIVATE + 9, &arg));
	EXPECT_EQ(ENOTTY, errno);
	close(fd);
}

TEST(unprivileged_user_creates_and_clones)
{
	pid_t pid = fork();
	int status;

	ASSERT_LE(0, pid);
	if (pid == 0) {
		int fd, cfd;

		if (setgid(65534) || setuid(65534))
			_exit(10);
		fd = socket(AF_KCM, SOCK_DGRAM, 0);
		if (fd < 0)
			_exit(11);
		cfd = kcm_clone(fd);
		if (cfd < 0)
			_exit(12);
		if (kcm_set_recv_disabled(cfd, 1) || kcm_recv_disabled(cfd) != 1)
			_exit(13);
		close(fd);
		close(cfd);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* Passes @fd over the UNIX socket @via (SCM_RIGHTS). */
static int send_fd(int via, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, byte = 'f';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(via, &mh, 0) == 1 ? 0 : -1;
}

static int recv_fd(int via)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(via, &mh, 0) != 1 || !(cm = CMSG_FIRSTHDR(&mh)) || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/*
 * An unprivileged user attaches exactly what it holds descriptors for: its own
 * TCP socket, a program it was handed, a root-owned socket passed to it over
 * SCM_RIGHTS; a descriptor it does not hold (root's, closed in the child) is
 * ENOENT, and a program descriptor it does not hold is EBADF (net/kcm's errnos).
 */
TEST(unprivileged_user_attaches_what_it_holds)
{
	int prog = load_len_prefix_parser(), roots[2], via[2], status;
	pid_t pid;

	ASSERT_LE(0, prog);
	ASSERT_EQ(0, tcp_pair(AF_INET, roots));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_DGRAM, 0, via));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		unsigned char msg[64], out[64];
		size_t n = make_frame(msg, 5, 30);
		int kcm, mine[2], passed, unused_prog, p[2];

		close(via[0]);
		/* Root's socket's number now names a pipe here: the socket is not held. */
		if (pipe(p) || dup2(p[0], roots[0]) != roots[0])
			_exit(9);
		if (setgid(65534) || setuid(65534))
			_exit(10);
		kcm = socket(AF_KCM, SOCK_SEQPACKET, 0);
		if (kcm < 0 || tcp_pair(AF_INET, mine))
			_exit(11);
		if (kcm_attach(kcm, roots[0], prog) != -ENOENT)
			_exit(12);
		unused_prog = dup(prog);
		close(unused_prog);
		if (kcm_attach(kcm, mine[0], unused_prog) != -EBADF)
			_exit(13);
		if (kcm_attach(kcm, mine[0], prog))
			_exit(14);
		if (write_all(mine[1], msg, n) || recv(kcm, out, sizeof(out), 0) != (ssize_t)n ||
		    memcmp(msg, out, n))
			_exit(15);
		if (send(kcm, msg, n, MSG_EOR) != (ssize_t)n || read_all(mine[1], out, n) ||
		    memcmp(msg, out, n))
			_exit(16);
		/* Root's socket, once it is passed over: held now, so it attaches. */
		if (write(via[1], "?", 1) != 1)
			_exit(17);
		passed = recv_fd(via[1]);
		if (passed < 0 || kcm_attach(kcm, passed, prog))
			_exit(18);
		if (kcm_unattach(kcm, passed) || kcm_unattach(kcm, mine[0]))
			_exit(19);
		close(kcm);
		_exit(0);
	}
	close(via[1]);
	{
		char c;

		ASSERT_EQ(1, read(via[0], &c, 1));
		ASSERT_EQ(0, send_fd(via[0], roots[0]));
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	close(via[0]);
	close(roots[0]);
	close(roots[1]);
	close(prog);
}

TEST(network_namespaces)
{
	for (int round = 0; round < 8; round++) {
		pid_t pid = fork();
		int status;

		ASSERT_LE(0, pid);
		if (pid == 0) {
			int fd, cfd;

			if (unshare(CLONE_NEWNET))
				_exit(10);
			fd = socket(AF_KCM, round & 1 ? SOCK_SEQPACKET : SOCK_DGRAM, 0);
			if (fd < 0)
				_exit(11);
			cfd = kcm_clone(fd);
			if (cfd < 0)
				_exit(12);
			/* Leave the namespace's last sockets to process exit. */
			_exit(0);
		}
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		EXPECT_TRUE(WIFEXITED(status));
		EXPECT_EQ(0, WEXITSTATUS(status));
	}
}

static void *clone_close_worker(void *arg)
{
	int fd = *(int *)arg;
	long failures = 0;

	for (int i = 0; i < 500; i++) {
		int c = kcm_clone(fd);

		if (c < 0 || kcm_set_recv_disabled(c, i & 1) ||
		    kcm_recv_disabled(c) != (i & 1))
			failures++;
		if (c >= 0)
			close(c);
	}
	return (void *)failures;
}

TEST(threads_clone_and_close_concurrently)
{
	enum { T = 4 };
	pthread_t th[T];
	int fd = socket(AF_KCM, SOCK_DGRAM, 0);

	ASSERT_LE(0, fd);
	for (int i = 0; i < T; i++)
		ASSERT_EQ(0, pthread_create(&th[i], NULL, clone_close_worker, &fd));
	for (int i = 0; i < T; i++) {
		void *failures;

		ASSERT_EQ(0, pthread_join(th[i], &failures));
		EXPECT_EQ(0, (long)failures);
	}
	close(fd);
}

TEST(fork_shares_socket)
{
	int fd = socket(AF_KCM, SOCK_SEQPACKET, 0);
	pid_t pid;
	int status;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, kcm_set_recv_disabled(fd, 1));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		/* The child shares the socket: it sees the setting and can clone. */
		int c = kcm_clone(fd);

		_exit(c >= 0 && kcm_recv_disabled(fd) == 1 && kcm_recv_disabled(c) == 0 &&
		      kcm_set_recv_disabled(fd, 0) == 0 ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	/* And the parent sees the child's change. */
	EXPECT_EQ(0, kcm_recv_disabled(fd));
	close(fd);
}

TEST_HARNESS_MAIN
