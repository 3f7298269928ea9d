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
#include <linux/kcm.h>

#ifndef AF_KCM
#define AF_KCM 41
#endif
#ifndef SOL_KCM
#define SOL_KCM 281
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

#endif /* KCM_UTIL_H */
