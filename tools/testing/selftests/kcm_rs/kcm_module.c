// SPDX-License-Identifier: GPL-2.0
/*
 * Module references of the AF_KCM provider: rmmod is refused while any KCM
 * socket exists, works when none does, and socket(AF_KCM) autoloads the
 * module through its net-pf-41 alias. Needs KCM_MODULE and KCM_MODULE_PATH
 * (the VM runner sets both) and CAP_SYS_MODULE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "kcm_util.h"

static void ensure_loaded(struct __test_metadata *_metadata)
{
	if (module_loaded(kcm_module_name()) != 1)
		ASSERT_EQ(0, load_module(getenv("KCM_MODULE_PATH")));
}

TEST(rmmod_refused_while_a_socket_exists)
{
	int fd, cfd;

	ensure_loaded(_metadata);
	fd = socket(AF_KCM, SOCK_DGRAM, 0);
	ASSERT_LE(0, fd);
	cfd = kcm_clone(fd);
	ASSERT_LE(0, cfd);
	EXPECT_EQ(-EWOULDBLOCK, unload_module(kcm_module_name()));
	close(fd);
	/* The clone alone still pins the module. */
	EXPECT_EQ(-EWOULDBLOCK, unload_module(kcm_module_name()));
	EXPECT_EQ(1, module_loaded(kcm_module_name()));
	close(cfd);
	EXPECT_EQ(0, unload_module(kcm_module_name()));
	EXPECT_EQ(0, module_loaded(kcm_module_name()));
	ensure_loaded(_metadata);
}

TEST(socket_autoloads_the_module)
{
	int fd;

	ensure_loaded(_metadata);
	ASSERT_EQ(0, unload_module(kcm_module_name()));
	ASSERT_EQ(0, module_loaded(kcm_module_name()));
	fd = socket(AF_KCM, SOCK_SEQPACKET, 0);
	ASSERT_LE(0, fd) TH_LOG("socket after unload: %s", strerror(errno));
	EXPECT_EQ(1, module_loaded(kcm_module_name()));
	close(fd);
}

TEST(load_unload_loop)
{
	for (int i = 0; i < 20; i++) {
		int fd, cfd;

		ensure_loaded(_metadata);
		fd = socket(AF_KCM, i & 1 ? SOCK_DGRAM : SOCK_SEQPACKET, 0);
		ASSERT_LE(0, fd);
		cfd = kcm_clone(fd);
		ASSERT_LE(0, cfd);
		ASSERT_EQ(0, kcm_set_recv_disabled(cfd, 1));
		close(cfd);
		close(fd);
		ASSERT_EQ(0, unload_module(kcm_module_name())) TH_LOG("round %d", i);
	}
	ensure_loaded(_metadata);
}

TEST(unload_after_namespace_sockets_die)
{
	pid_t pid;
	int status;

	ensure_loaded(_metadata);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (unshare(CLONE_NEWNET))
			_exit(10);
		if (socket(AF_KCM, SOCK_DGRAM, 0) < 0)
			_exit(11);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
	/* The socket went with the process; the namespace may die later. */
	EXPECT_EQ(0, unload_module(kcm_module_name()));
	ensure_loaded(_metadata);
}

TEST_HARNESS_MAIN
