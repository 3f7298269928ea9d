// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_tour: a walk through the AF_KCM socket objects: it makes a multiplexor,
 * clones sockets onto it, steers receive with KCM_RECV_DISABLE, and shows that
 * the module is pinned while sockets exist. kcm_echo exchanges messages.
 * Exits 0 when every step behaves as the API says.
 *
 * Build: gcc -static -o kcm_tour kcm_tour.c
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/kcm.h>

#ifndef AF_KCM
#define AF_KCM 41
#endif
#ifndef SOL_KCM
#define SOL_KCM 281
#endif

static int failures;

static void step(int ok, const char *what)
{
	printf("  [%s] %s\n", ok ? " ok " : "FAIL", what);
	if (!ok)
		failures++;
}

static int module_refs(const char *name)
{
	char line[256], mod[64];
	int size, refs = -1;
	FILE *f = fopen("/proc/modules", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %d %d", mod, &size, &refs) == 3 && !strcmp(mod, name))
			break;
		else
			refs = -1;
	fclose(f);
	return refs;
}

int main(void)
{
	const char *module = getenv("KCM_MODULE") ? getenv("KCM_MODULE") : "kcm_rs";
	struct kcm_clone clone;
	int mux_fd, clones[3], val, refs_before, refs_after;
	socklen_t len = sizeof(val);

	printf("kcm_tour: AF_KCM provider %s\n", module);
	refs_before = module_refs(module);

	mux_fd = socket(AF_KCM, SOCK_SEQPACKET, KCMPROTO_CONNECTED);
	step(mux_fd >= 0, "socket(AF_KCM, SOCK_SEQPACKET, KCMPROTO_CONNECTED) makes a multiplexor");
	if (mux_fd < 0) {
		printf("  socket: %s\n", strerror(errno));
		return 1;
	}

	for (int i = 0; i < 3; i++) {
		clone.fd = -1;
		clones[i] = ioctl(mux_fd, SIOCKCMCLONE, &clone) ? -1 : clone.fd;
	}
	step(clones[0] >= 0 && clones[1] >= 0 && clones[2] >= 0,
	     "SIOCKCMCLONE adds three more sockets to the multiplexor");
	printf("         fds %d (first) and %d %d %d (clones)\n", mux_fd, clones[0], clones[1],
	       clones[2]);

	val = 1;
	step(!setsockopt(clones[1], SOL_KCM, KCM_RECV_DISABLE, &val, sizeof(val)),
	     "KCM_RECV_DISABLE=1 takes one clone out of receive steering");
	val = -1;
	step(!getsockopt(clones[1], SOL_KCM, KCM_RECV_DISABLE, &val, &len) && val == 1,
	     "getsockopt reads it back as 1");
	len = sizeof(val);
	step(!getsockopt(clones[0], SOL_KCM, KCM_RECV_DISABLE, &val, &len) && val == 0,
	     "its siblings still receive (0)");

	errno = 0;
	step(setsockopt(mux_fd, SOL_KCM, 77, &val, sizeof(val)) && errno == ENOPROTOOPT,
	     "an unknown SOL_KCM option is ENOPROTOOPT, as in net/kcm");

	refs_after = module_refs(module);
	if (refs_before >= 0) {
		/* One for proto_ops.owner, one for the sock's proto.owner. */
		step(refs_after == refs_before + 2 * 4,
		     "each of the 4 sockets pins the module (socket and sock: 2 references)");
		printf("         %s reference count %d -> %d\n", module, refs_before, refs_after);
	}

	close(mux_fd);
	val = -1;
	len = sizeof(val);
	step(!getsockopt(clones[1], SOL_KCM, KCM_RECV_DISABLE, &val, &len) && val == 1,
	     "the clones outlive the socket they were cloned from");
	for (int i = 0; i < 3; i++)
		close(clones[i]);
	if (refs_before >= 0)
		step(module_refs(module) == refs_before, "closing them drops the references");

	printf("kcm_tour: %s\n", failures ? "FAILED" : "all steps behaved as the API says");
	return failures ? 1 : 0;
}
