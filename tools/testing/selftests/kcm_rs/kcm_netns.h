/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Network namespaces, veth pairs, IPv4 addresses and MPTCP in-kernel path
 * manager endpoints for the kcm-rs selftests, over raw netlink and ioctls:
 * the tests are linked statically and the guest has busybox only (no
 * iproute2, no libmnl/libnl).
 *
 * Every function returns 0 (or an fd, an ifindex, a count) on success and a
 * negative errno on failure; it prints nothing unless it fails, and then
 * only "# ..." lines on stderr. Namespace changes are per thread: a function
 * acts on the network namespace of the calling thread, and netns_enter()
 * moves only the calling thread. A socket stays in the namespace it was
 * created in, whichever thread uses it later.
 *
 * two_path_setup() builds the topology of the MPTCP tests:
 *
 *   client ns (the caller's)                         server ns (new)
 *   kcmv1a 10.0.1.1/24  <---- path 1 (veth) ---->  kcmv1b 10.0.1.2/24
 *   kcmv2a 10.0.2.1/24  <---- path 2 (veth) ---->  kcmv2b 10.0.2.2/24
 *
 * The server's path manager announces 10.0.2.2 (a "signal" endpoint), so an
 * MPTCP client that connects to 10.0.1.2 gets a second subflow to 10.0.2.2
 * over path 2 shortly after the connection is established. The announcement
 * carries no port: the join goes to 10.0.2.2 on the port of the connection,
 * so the server must listen on INADDR_ANY (a listener bound to 10.0.1.2 only
 * answers the join with a reset, and the connection stays on one subflow).
 */
#ifndef KCM_NETNS_H
#define KCM_NETNS_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/genetlink.h>
#include <linux/mptcp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#ifndef CLONE_NEWNET
#define CLONE_NEWNET 0x40000000	/* uapi linux/sched.h */
#endif
#ifndef SOL_MPTCP
#define SOL_MPTCP 284		/* uapi linux/socket.h */
#endif
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262	/* uapi linux/in.h */
#endif

/* The topology of two_path_setup(), for the tests to reuse. */
#define TWO_PATH_DEV1_CLIENT	"kcmv1a"
#define TWO_PATH_DEV1_SERVER	"kcmv1b"
#define TWO_PATH_DEV2_CLIENT	"kcmv2a"
#define TWO_PATH_DEV2_SERVER	"kcmv2b"
#define TWO_PATH_ADDR1_CLIENT	"10.0.1.1"
#define TWO_PATH_ADDR1_SERVER	"10.0.1.2"
#define TWO_PATH_ADDR2_CLIENT	"10.0.2.1"
#define TWO_PATH_ADDR2_SERVER	"10.0.2.2"
#define TWO_PATH_PREFIXLEN	24

/* ---- Netlink message building (internal) ---- */

#define KCM_NL_BUFSZ	4096
#define KCM_NL_RCVSZ	32768
#define KCM_NL_TIMEOUT	5	/* seconds to wait for a kernel answer */

struct kcm_nlreq {
	union {
		struct nlmsghdr nh;
		char buf[KCM_NL_BUFSZ];
	};
	bool overflow;		/* something did not fit: not sent */
};

static inline void kcm_nl_init(struct kcm_nlreq *req, uint16_t type,
			       uint16_t flags)
{
	memset(req, 0, sizeof(*req));
	req->nh.nlmsg_len = NLMSG_HDRLEN;
	req->nh.nlmsg_type = type;
	req->nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
}

/* Appends @len bytes (aligned) to the message; NULL when it does not fit. */
static inline void *kcm_nl_put(struct kcm_nlreq *req, const void *data,
			       size_t len)
{
	size_t off = NLMSG_ALIGN(req->nh.nlmsg_len);
	char *p;

	if (req->overflow || off + NLMSG_ALIGN(len) > sizeof(req->buf)) {
		req->overflow = true;
		return NULL;
	}
	p = req->buf + off;
	memset(p, 0, NLMSG_ALIGN(len));
	if (data)
		memcpy(p, data, len);
	req->nh.nlmsg_len = off + NLMSG_ALIGN(len);
	return p;
}

static inline struct nlattr *kcm_nl_attr(struct kcm_nlreq *req, int type,
					 const void *data, size_t len)
{
	struct nlattr *nla = kcm_nl_put(req, NULL, NLA_HDRLEN + len);

	if (!nla)
		return NULL;
	nla->nla_type = type;
	nla->nla_len = NLA_HDRLEN + len;
	if (data)
		memcpy((char *)nla + NLA_HDRLEN, data, len);
	return nla;
}

static inline void kcm_nl_attr_str(struct kcm_nlreq *req, int type,
				   const char *s)
{
	kcm_nl_attr(req, type, s, strlen(s) + 1);
}

static inline void kcm_nl_attr_u16(struct kcm_nlreq *req, int type,
				   uint16_t v)
{
	kcm_nl_attr(req, type, &v, sizeof(v));
}

static inline void kcm_nl_attr_u32(struct kcm_nlreq *req, int type,
				   uint32_t v)
{
	kcm_nl_attr(req, type, &v, sizeof(v));
}

/* Opens a nest; @type should carry NLA_F_NESTED when it is a pure nest. */
static inline struct nlattr *kcm_nl_nest_start(struct kcm_nlreq *req,
					       int type)
{
	return kcm_nl_attr(req, type, NULL, 0);
}

static inline void kcm_nl_nest_end(struct kcm_nlreq *req, struct nlattr *nest)
{
	if (nest)
		nest->nla_len = req->buf + req->nh.nlmsg_len - (char *)nest;
}

/* Finds attribute @type among the attributes in [@start, @start + @len). */
static inline const struct nlattr *kcm_nl_find(const void *start, size_t len,
					       int type)
{
	const char *p = start;

	while (len >= NLA_HDRLEN) {
		const struct nlattr *nla = (const struct nlattr *)p;
		size_t step = NLA_ALIGN(nla->nla_len);

		if (nla->nla_len < NLA_HDRLEN || nla->nla_len > len)
			break;
		if ((nla->nla_type & NLA_TYPE_MASK) == type)
			return nla;
		if (step >= len)
			break;
		p += step;
		len -= step;
	}
	return NULL;
}

static inline const void *kcm_nla_data(const struct nlattr *nla)
{
	return (const char *)nla + NLA_HDRLEN;
}

static inline void kcm_nl_report(const struct nlmsghdr *h, const char *what,
				 int err)
{
	const struct nlmsgerr *e = NLMSG_DATA(h);
	const struct nlattr *msg = NULL;

	if (!what)
		return;
	if (h->nlmsg_flags & NLM_F_ACK_TLVS) {
		/* The TLVs follow the request, or only its header if capped. */
		size_t off = NLMSG_HDRLEN + sizeof(*e);

		if (!(h->nlmsg_flags & NLM_F_CAPPED))
			off += e->msg.nlmsg_len - NLMSG_HDRLEN;
		off = NLMSG_ALIGN(off);
		if (off < h->nlmsg_len)
			msg = kcm_nl_find((const char *)h + off,
					  h->nlmsg_len - off, NLMSGERR_ATTR_MSG);
	}
	if (msg && msg->nla_len > NLA_HDRLEN)
		fprintf(stderr, "# %s: %s (%.*s)\n", what, strerror(-err),
			(int)(msg->nla_len - NLA_HDRLEN),
			(const char *)kcm_nla_data(msg));
	else
		fprintf(stderr, "# %s: %s\n", what, strerror(-err));
}

/*
 * Sends @req on a new netlink socket of @proto (in the calling thread's
 * namespace) and waits for the ACK. The first other reply to the request is
 * copied to @reply (at most @reply_len bytes) when @reply is not NULL.
 * Returns the ACK's error: 0 or -errno. A failure is reported on stderr as
 * "# @what: ..." unless @what is NULL.
 */
static inline int kcm_nl_transact(int proto, struct kcm_nlreq *req,
				  void *reply, size_t reply_len,
				  const char *what)
{
	static uint32_t kcm_nl_seq;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	struct timeval tv = { .tv_sec = KCM_NL_TIMEOUT };
	static __thread char rbuf[KCM_NL_RCVSZ]
		__attribute__((aligned(NLMSG_ALIGNTO)));
	bool got_reply = false;
	int fd, one = 1, ret;
	uint32_t seq;

	if (req->overflow) {
		if (what)
			fprintf(stderr, "# %s: request too long\n", what);
		return -EMSGSIZE;
	}
	seq = __atomic_add_fetch(&kcm_nl_seq, 1, __ATOMIC_RELAXED);
	req->nh.nlmsg_seq = seq;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);
	if (fd < 0) {
		ret = -errno;
		if (what)
			fprintf(stderr, "# %s: netlink socket: %s\n", what,
				strerror(-ret));
		return ret;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* Best effort: an error message from the kernel, without the echo. */
	setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));

	if (sendto(fd, req->buf, req->nh.nlmsg_len, 0,
		   (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
		ret = -errno;
		if (what)
			fprintf(stderr, "# %s: netlink send: %s\n", what,
				strerror(-ret));
		goto out;
	}
	for (;;) {
		struct nlmsghdr *h;
		ssize_t n = recv(fd, rbuf, sizeof(rbuf), 0);
		int len;

		if (n < 0) {
			ret = -errno;
			if (ret == -EAGAIN || ret == -EWOULDBLOCK)
				ret = -ETIMEDOUT;
			if (ret == -EINTR)
				continue;
			if (what)
				fprintf(stderr, "# %s: netlink receive: %s\n",
					what, strerror(-ret));
			goto out;
		}
		len = n;
		for (h = (struct nlmsghdr *)rbuf; NLMSG_OK(h, len);
		     h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
					ret = -EPROTO;
				else
					ret = e->error;
				if (ret > 0)
					ret = -EPROTO;
				if (ret)
					kcm_nl_report(h, what, ret);
				goto out;
			}
			if (reply && !got_reply) {
				size_t l = h->nlmsg_len;

				memcpy(reply, h, l < reply_len ? l : reply_len);
				got_reply = true;
			}
		}
	}
out:
	close(fd);
	return ret;
}

/* ---- Namespaces ---- */

/* An fd of the calling thread's network namespace (O_CLOEXEC). */
static inline int netns_open_current(void)
{
	char path[64];
	int fd;

	/* Not /proc/self: that is the main thread's, not the caller's. */
	fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		snprintf(path, sizeof(path), "/proc/self/task/%ld/ns/net",
			 (long)syscall(SYS_gettid));
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0) {
		fd = -errno;
		fprintf(stderr, "# open own netns: %s\n", strerror(-fd));
	}
	return fd;
}

/* Moves the calling thread (only) into the network namespace @nsfd. */
static inline int netns_enter(int nsfd)
{
	/* The raw syscall: <sched.h> declares setns() only with _GNU_SOURCE. */
	if (syscall(SYS_setns, nsfd, CLONE_NEWNET)) {
		int ret = -errno;

		fprintf(stderr, "# setns(%d, CLONE_NEWNET): %s\n", nsfd,
			strerror(-ret));
		return ret;
	}
	return 0;
}

static inline int link_set_up(const char *ifname, bool up);

/*
 * Creates a network namespace with its "lo" up and returns an fd of it
 * (O_CLOEXEC); the calling thread stays in its own namespace. The namespace
 * lives as long as the fd, a thread in it or a socket created in it.
 */
static inline int netns_new(void)
{
	int orig, nsfd, ret;

	orig = netns_open_current();
	if (orig < 0)
		return orig;
	if (syscall(SYS_unshare, CLONE_NEWNET)) {
		ret = -errno;
		fprintf(stderr, "# unshare(CLONE_NEWNET): %s\n", strerror(-ret));
		close(orig);
		return ret;
	}
	nsfd = netns_open_current();
	ret = nsfd < 0 ? nsfd : link_set_up("lo", true);
	if (netns_enter(orig)) {
		/* Stuck in the new namespace: nothing sensible can follow. */
		fprintf(stderr, "# netns_new: cannot return to the old netns\n");
		if (!ret)
			ret = -EIO;
	}
	close(orig);
	if (ret < 0) {
		if (nsfd >= 0)
			close(nsfd);
		return ret;
	}
	return nsfd;
}

/* ---- Links and addresses (in the calling thread's namespace) ---- */

static inline int kcm_ifreq_ioctl(unsigned long req, struct ifreq *ifr,
				  const char *ifname, bool quiet)
{
	int fd, ret = 0;

	if (strlen(ifname) >= IFNAMSIZ)
		return -EINVAL;
	strcpy(ifr->ifr_name, ifname);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, req, ifr))
		ret = -errno;
	close(fd);
	if (ret && !quiet)
		fprintf(stderr, "# ioctl(%#lx) on %s: %s\n", req, ifname,
			strerror(-ret));
	return ret;
}

/* The ifindex of @ifname, or -errno (-ENODEV when there is none). */
static inline int link_index(const char *ifname)
{
	struct ifreq ifr;
	int ret;

	memset(&ifr, 0, sizeof(ifr));
	ret = kcm_ifreq_ioctl(SIOCGIFINDEX, &ifr, ifname, false);
	return ret ? ret : ifr.ifr_ifindex;
}

/* Sets @ifname administratively up or down (IFF_UP). */
static inline int link_set_up(const char *ifname, bool up)
{
	struct ifreq ifr;
	int ret;

	memset(&ifr, 0, sizeof(ifr));
	ret = kcm_ifreq_ioctl(SIOCGIFFLAGS, &ifr, ifname, false);
	if (ret)
		return ret;
	if (up)
		ifr.ifr_flags |= IFF_UP;
	else
		ifr.ifr_flags &= ~IFF_UP;
	return kcm_ifreq_ioctl(SIOCSIFFLAGS, &ifr, ifname, false);
}

/*
 * Creates the veth pair @name (here) and @peer, the peer directly in the
 * namespace @peer_nsfd (or here when @peer_nsfd < 0). Both ends start down.
 */
static inline int veth_pair_add(const char *name, const char *peer,
				int peer_nsfd)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	struct nlattr *linkinfo, *data, *peerinfo;
	struct kcm_nlreq req;

	kcm_nl_init(&req, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	kcm_nl_put(&req, &ifi, sizeof(ifi));
	kcm_nl_attr_str(&req, IFLA_IFNAME, name);
	linkinfo = kcm_nl_nest_start(&req, IFLA_LINKINFO | NLA_F_NESTED);
	kcm_nl_attr_str(&req, IFLA_INFO_KIND, "veth");
	data = kcm_nl_nest_start(&req, IFLA_INFO_DATA | NLA_F_NESTED);
	/*
	 * Not a pure nest: a struct ifinfomsg followed by the peer's IFLA_*
	 * attributes, so no NLA_F_NESTED (iproute2 sets none either).
	 */
	peerinfo = kcm_nl_nest_start(&req, VETH_INFO_PEER);
	kcm_nl_put(&req, &ifi, sizeof(ifi));
	kcm_nl_attr_str(&req, IFLA_IFNAME, peer);
	if (peer_nsfd >= 0)
		kcm_nl_attr_u32(&req, IFLA_NET_NS_FD, peer_nsfd);
	kcm_nl_nest_end(&req, peerinfo);
	kcm_nl_nest_end(&req, data);
	kcm_nl_nest_end(&req, linkinfo);
	return kcm_nl_transact(NETLINK_ROUTE, &req, NULL, 0,
			       "RTM_NEWLINK veth");
}

static inline int kcm_link_del(const char *ifname, bool quiet)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	struct kcm_nlreq req;

	kcm_nl_init(&req, RTM_DELLINK, 0);
	kcm_nl_put(&req, &ifi, sizeof(ifi));
	kcm_nl_attr_str(&req, IFLA_IFNAME, ifname);
	return kcm_nl_transact(NETLINK_ROUTE, &req, NULL, 0,
			       quiet ? NULL : "RTM_DELLINK");
}

/* Deletes the link @ifname; for a veth end, that deletes its peer too. */
static inline int link_del(const char *ifname)
{
	return kcm_link_del(ifname, false);
}

/* Adds the IPv4 address @addr/@prefixlen (and its prefix route) to @ifname. */
static inline int addr4_add(const char *ifname, const char *addr,
			    int prefixlen)
{
	struct ifaddrmsg ifa = {
		.ifa_family = AF_INET,
		.ifa_prefixlen = prefixlen,
		.ifa_scope = RT_SCOPE_UNIVERSE,
	};
	struct kcm_nlreq req;
	struct in_addr in;
	int idx;

	if (inet_pton(AF_INET, addr, &in) != 1 || prefixlen < 0 ||
	    prefixlen > 32) {
		fprintf(stderr, "# addr4_add: bad address %s/%d\n", addr,
			prefixlen);
		return -EINVAL;
	}
	idx = link_index(ifname);
	if (idx < 0)
		return idx;
	ifa.ifa_index = idx;
	kcm_nl_init(&req, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
	kcm_nl_put(&req, &ifa, sizeof(ifa));
	kcm_nl_attr(&req, IFA_LOCAL, &in, sizeof(in));
	kcm_nl_attr(&req, IFA_ADDRESS, &in, sizeof(in));
	return kcm_nl_transact(NETLINK_ROUTE, &req, NULL, 0, "RTM_NEWADDR");
}

/* ---- Generic netlink and the MPTCP in-kernel path manager ---- */

/* The id of the generic netlink family @name, or -errno (-ENOENT: none). */
static inline int genl_family_id(const char *name)
{
	struct genlmsghdr g = { .cmd = CTRL_CMD_GETFAMILY, .version = 1 };
	static __thread char reply[8192]
		__attribute__((aligned(NLMSG_ALIGNTO)));
	const struct nlmsghdr *h = (const struct nlmsghdr *)reply;
	const struct nlattr *id;
	struct kcm_nlreq req;
	size_t off = NLMSG_HDRLEN + GENL_HDRLEN;
	size_t len;
	int ret;

	kcm_nl_init(&req, GENL_ID_CTRL, 0);
	kcm_nl_put(&req, &g, sizeof(g));
	kcm_nl_attr_str(&req, CTRL_ATTR_FAMILY_NAME, name);
	memset(reply, 0, sizeof(reply));
	ret = kcm_nl_transact(NETLINK_GENERIC, &req, reply, sizeof(reply),
			      "CTRL_CMD_GETFAMILY");
	if (ret)
		return ret;
	len = h->nlmsg_len < sizeof(reply) ? h->nlmsg_len : sizeof(reply);
	if (h->nlmsg_type != GENL_ID_CTRL || len <= off)
		goto bad;
	id = kcm_nl_find(reply + off, len - off, CTRL_ATTR_FAMILY_ID);
	if (!id || id->nla_len < NLA_HDRLEN + sizeof(uint16_t))
		goto bad;
	return *(const uint16_t *)kcm_nla_data(id);
bad:
	fprintf(stderr, "# CTRL_CMD_GETFAMILY %s: no family id in reply\n",
		name);
	return -EPROTO;
}

/* Starts an "mptcp_pm" request of command @cmd; 0 or -errno. */
static inline int kcm_mptcp_pm_init(struct kcm_nlreq *req, uint8_t cmd)
{
	struct genlmsghdr g = { .cmd = cmd, .version = MPTCP_PM_VER };
	int id = genl_family_id(MPTCP_PM_NAME);

	if (id < 0)
		return id;
	kcm_nl_init(req, id, 0);
	kcm_nl_put(req, &g, sizeof(g));
	return 0;
}

/*
 * Sets the path manager limits of the calling thread's namespace: at most
 * @subflows additional subflows per connection, and at most
 * @add_addr_accepted addresses announced by the peer (ADD_ADDR) used.
 */
static inline int mptcp_pm_set_limits(unsigned int subflows,
				      unsigned int add_addr_accepted)
{
	struct kcm_nlreq req;
	int ret = kcm_mptcp_pm_init(&req, MPTCP_PM_CMD_SET_LIMITS);

	if (ret)
		return ret;
	kcm_nl_attr_u32(&req, MPTCP_PM_ATTR_RCV_ADD_ADDRS, add_addr_accepted);
	kcm_nl_attr_u32(&req, MPTCP_PM_ATTR_SUBFLOWS, subflows);
	return kcm_nl_transact(NETLINK_GENERIC, &req, NULL, 0,
			       "MPTCP_PM_CMD_SET_LIMITS");
}

/* Reads the limits that mptcp_pm_set_limits() sets. */
static inline int mptcp_pm_get_limits(unsigned int *subflows,
				      unsigned int *add_addr_accepted)
{
	static __thread char reply[1024]
		__attribute__((aligned(NLMSG_ALIGNTO)));
	const struct nlmsghdr *h = (const struct nlmsghdr *)reply;
	size_t off = NLMSG_HDRLEN + GENL_HDRLEN;
	const struct nlattr *sf, *aa;
	struct kcm_nlreq req;
	size_t len;
	int ret = kcm_mptcp_pm_init(&req, MPTCP_PM_CMD_GET_LIMITS);

	if (ret)
		return ret;
	memset(reply, 0, sizeof(reply));
	ret = kcm_nl_transact(NETLINK_GENERIC, &req, reply, sizeof(reply),
			      "MPTCP_PM_CMD_GET_LIMITS");
	if (ret)
		return ret;
	len = h->nlmsg_len < sizeof(reply) ? h->nlmsg_len : sizeof(reply);
	if (len <= off)
		goto bad;
	sf = kcm_nl_find(reply + off, len - off, MPTCP_PM_ATTR_SUBFLOWS);
	aa = kcm_nl_find(reply + off, len - off, MPTCP_PM_ATTR_RCV_ADD_ADDRS);
	if (!sf || !aa || sf->nla_len < NLA_HDRLEN + 4 ||
	    aa->nla_len < NLA_HDRLEN + 4)
		goto bad;
	*subflows = *(const uint32_t *)kcm_nla_data(sf);
	*add_addr_accepted = *(const uint32_t *)kcm_nla_data(aa);
	return 0;
bad:
	fprintf(stderr, "# MPTCP_PM_CMD_GET_LIMITS: malformed reply\n");
	return -EPROTO;
}

/*
 * Adds an endpoint for the local IPv4 address @addr4 to the path manager of
 * the calling thread's namespace. @flags: MPTCP_PM_ADDR_FLAG_SIGNAL
 * (announce it to peers with ADD_ADDR), MPTCP_PM_ADDR_FLAG_SUBFLOW (open
 * subflows from it), MPTCP_PM_ADDR_FLAG_BACKUP, ... @ifindex: the device to
 * bind subflows from it to, or 0 for none.
 */
static inline int mptcp_pm_add_endpoint(const char *addr4, int ifindex,
					unsigned int flags)
{
	struct kcm_nlreq req;
	struct nlattr *nest;
	struct in_addr in;
	int ret;

	if (inet_pton(AF_INET, addr4, &in) != 1) {
		fprintf(stderr, "# mptcp_pm_add_endpoint: bad address %s\n",
			addr4);
		return -EINVAL;
	}
	ret = kcm_mptcp_pm_init(&req, MPTCP_PM_CMD_ADD_ADDR);
	if (ret)
		return ret;
	nest = kcm_nl_nest_start(&req, MPTCP_PM_ATTR_ADDR | NLA_F_NESTED);
	kcm_nl_attr_u16(&req, MPTCP_PM_ADDR_ATTR_FAMILY, AF_INET);
	/* in.s_addr is already in network byte order (NLA_BE32). */
	kcm_nl_attr(&req, MPTCP_PM_ADDR_ATTR_ADDR4, &in.s_addr,
		    sizeof(in.s_addr));
	kcm_nl_attr_u32(&req, MPTCP_PM_ADDR_ATTR_FLAGS, flags);
	if (ifindex > 0)
		kcm_nl_attr_u32(&req, MPTCP_PM_ADDR_ATTR_IF_IDX, ifindex);
	kcm_nl_nest_end(&req, nest);
	return kcm_nl_transact(NETLINK_GENERIC, &req, NULL, 0,
			       "MPTCP_PM_CMD_ADD_ADDR");
}

/*
 * Removes every endpoint of the calling thread's namespace (the limits
 * stay); subflows of existing connections that use them are closed.
 */
static inline int mptcp_pm_flush_endpoints(void)
{
	struct kcm_nlreq req;
	int ret = kcm_mptcp_pm_init(&req, MPTCP_PM_CMD_FLUSH_ADDRS);

	if (ret)
		return ret;
	return kcm_nl_transact(NETLINK_GENERIC, &req, NULL, 0,
			       "MPTCP_PM_CMD_FLUSH_ADDRS");
}

/*
 * The number of *additional* subflows of the MPTCP socket @fd, that is
 * MPTCP_INFO's mptcpi_subflows: subflows joined with MP_JOIN that are still
 * open, not counting the initial one. 0 right after connect(); 1 once a
 * second path has joined. -errno on failure (e.g. -EOPNOTSUPP, -ENOPROTOOPT
 * for a plain TCP socket).
 */
static inline int mptcp_subflow_count(int fd)
{
	struct mptcp_info info;
	socklen_t len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (getsockopt(fd, SOL_MPTCP, MPTCP_INFO, &info, &len))
		return -errno;
	return info.mptcpi_subflows;
}

/* ---- The two-path topology of the MPTCP tests ---- */

struct two_paths {
	int client_ns;		/* the caller's netns at setup (fd) */
	int server_ns;		/* the new server netns (fd) */
	bool limits_saved;	/* client PM limits to restore at teardown: */
	unsigned int saved_subflows;
	unsigned int saved_add_addr_accepted;
};

/* One end's two veth devices: their addresses, and up (in that end's ns). */
static inline int two_path_end_up(const char *dev1, const char *addr1,
				  const char *dev2, const char *addr2)
{
	int ret;

	ret = addr4_add(dev1, addr1, TWO_PATH_PREFIXLEN);
	if (!ret)
		ret = addr4_add(dev2, addr2, TWO_PATH_PREFIXLEN);
	if (!ret)
		ret = link_set_up(dev1, true);
	if (!ret)
		ret = link_set_up(dev2, true);
	return ret;
}

/* Addresses, links and path manager of the server end (in the server ns). */
static inline int two_path_server_side(void)
{
	int ret, idx;

	ret = two_path_end_up(TWO_PATH_DEV1_SERVER, TWO_PATH_ADDR1_SERVER,
			      TWO_PATH_DEV2_SERVER, TWO_PATH_ADDR2_SERVER);
	if (!ret)
		ret = mptcp_pm_set_limits(2, 0);
	if (ret)
		return ret;
	idx = link_index(TWO_PATH_DEV2_SERVER);
	if (idx < 0)
		return idx;
	return mptcp_pm_add_endpoint(TWO_PATH_ADDR2_SERVER, idx,
				     MPTCP_PM_ADDR_FLAG_SIGNAL);
}

/*
 * Undoes two_path_setup() (also after a partial one) and leaves the calling
 * thread in the client namespace: deletes the client's veth ends (and with
 * them the server's), flushes the client's MPTCP endpoints, restores its
 * limits and closes the namespace fds. The server namespace goes away with
 * its last reference: close the sockets created in it too. Returns the first
 * error; @p can be set up again afterwards.
 */
static inline int two_path_teardown(struct two_paths *p)
{
	int ret = 0, err;

	if (p->client_ns >= 0)
		ret = netns_enter(p->client_ns);
	if (ret)
		return ret;
	/* Gone already (-ENODEV) is fine: a failed setup may not have made it. */
	err = kcm_link_del(TWO_PATH_DEV1_CLIENT, true);
	if (err && err != -ENODEV) {
		fprintf(stderr, "# RTM_DELLINK %s: %s\n", TWO_PATH_DEV1_CLIENT,
			strerror(-err));
		ret = ret ? ret : err;
	}
	err = kcm_link_del(TWO_PATH_DEV2_CLIENT, true);
	if (err && err != -ENODEV) {
		fprintf(stderr, "# RTM_DELLINK %s: %s\n", TWO_PATH_DEV2_CLIENT,
			strerror(-err));
		ret = ret ? ret : err;
	}
	err = mptcp_pm_flush_endpoints();
	ret = ret ? ret : err;
	if (p->limits_saved) {
		err = mptcp_pm_set_limits(p->saved_subflows,
					  p->saved_add_addr_accepted);
		ret = ret ? ret : err;
		p->limits_saved = false;
	}
	if (p->server_ns >= 0)
		close(p->server_ns);
	if (p->client_ns >= 0)
		close(p->client_ns);
	p->server_ns = p->client_ns = -1;
	return ret;
}

/*
 * Builds the two-path topology described at the top of this file, with the
 * calling thread's namespace as the client and a new one as the server
 * (p->server_ns), all four links up:
 *   server PM: limits subflows 2, add_addr_accepted 0, endpoint 10.0.2.2
 *              (on kcmv2b) with MPTCP_PM_ADDR_FLAG_SIGNAL;
 *   client PM: limits subflows 2, add_addr_accepted 2, no endpoints.
 * An MPTCP connection from the client to 10.0.1.2 then gets a second subflow
 * 10.0.2.1 -> 10.0.2.2 once the server has announced 10.0.2.2, provided the
 * server's listener is bound to INADDR_ANY (see the top of this file).
 * Path 1 fails with link_set_up(TWO_PATH_DEV1_CLIENT, false) from the client
 * namespace (and comes back with true; its address and route return with
 * it).
 * The calling thread is in the client namespace on return. Undo with
 * two_path_teardown(); on failure, everything is already undone.
 */
static inline int two_path_setup(struct two_paths *p)
{
	int ret;

	memset(p, 0, sizeof(*p));
	p->server_ns = -1;
	p->client_ns = netns_open_current();
	if (p->client_ns < 0)
		return p->client_ns;
	/* Leftovers of an earlier run that died before its teardown. */
	kcm_link_del(TWO_PATH_DEV1_CLIENT, true);
	kcm_link_del(TWO_PATH_DEV2_CLIENT, true);

	ret = netns_new();
	if (ret < 0)
		goto fail;
	p->server_ns = ret;
	ret = mptcp_pm_get_limits(&p->saved_subflows,
				  &p->saved_add_addr_accepted);
	if (ret)
		goto fail;
	p->limits_saved = true;

	ret = veth_pair_add(TWO_PATH_DEV1_CLIENT, TWO_PATH_DEV1_SERVER,
			    p->server_ns);
	if (!ret)
		ret = veth_pair_add(TWO_PATH_DEV2_CLIENT, TWO_PATH_DEV2_SERVER,
				    p->server_ns);
	if (!ret)
		ret = two_path_end_up(TWO_PATH_DEV1_CLIENT, TWO_PATH_ADDR1_CLIENT,
				      TWO_PATH_DEV2_CLIENT, TWO_PATH_ADDR2_CLIENT);
	if (ret)
		goto fail;

	ret = netns_enter(p->server_ns);
	if (ret)
		goto fail;
	ret = two_path_server_side();
	if (netns_enter(p->client_ns) && !ret)
		ret = -EIO;
	if (ret)
		goto fail;

	ret = mptcp_pm_set_limits(2, 2);
	if (ret)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "# two_path_setup: %s\n", strerror(-ret));
	two_path_teardown(p);
	return ret;
}

#endif /* KCM_NETNS_H */
