// SPDX-License-Identifier: GPL-2.0
/*
 * kcm_echo: an echo service over KCM, both ends multiplexed.
 *
 *   kcm_echo server PORT CONNS THREADS
 *	accepts CONNS connections, attaches them all to one KCM multiplexor
 *	and echoes every message with THREADS threads on clones of it.
 *   kcm_echo client PORT CONNS THREADS MESSAGES
 *	connects CONNS times, attaches the connections to a multiplexor, and
 *	sends MESSAGES numbered requests from THREADS threads. A reply may come
 *	back on any connection to any thread: every request must be answered
 *	exactly once, intact.
 *
 * Messages: 4-byte big-endian payload length, then the payload. The parser is
 * kcm_len_parser.bpf.o (clang -target bpf), loaded by bpf_elf_load.h.
 *
 * KCM_TRANSPORT picks what carries the connections (kcm-rs; net/kcm takes
 * plain TCP only):
 *   tcp	TCP (the default);
 *   mptcp	Multipath TCP (IPPROTO_MPTCP): on one host a single subflow, across
 *		hosts with MPTCP endpoints (ip mptcp endpoint) several paths;
 *   tls	TCP with kernel TLS (TLS 1.3, AES-GCM-128) in both directions,
 *		with the fixed demo keys of ktls_demo_keys.h: a real application
 *		takes them from its TLS handshake, then attaches.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <linux/kcm.h>

#include "bpf_elf_load.h"
#include "ktls_demo_keys.h"

#ifndef AF_KCM
#define AF_KCM 41
#endif
#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

static enum { TRANSPORT_TCP, TRANSPORT_MPTCP, TRANSPORT_TLS } transport;

#define MAX_PAYLOAD 4000

struct request {
	uint32_t len;	/* big-endian payload length */
	uint32_t id;	/* big-endian request id */
	unsigned char body[MAX_PAYLOAD - 4];
};

static const char *parser_path = "kcm_len_parser.bpf.o";
static int kcm_mux, nthreads;
static unsigned int nmsgs;
static unsigned char *answered;
static pthread_mutex_t answered_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long bad_replies, duplicate_replies;

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static int make_mux(int *conns, int n)
{
	int prog = bpf_elf_load_socket_filter(parser_path);
	int mux = socket(AF_KCM, SOCK_DGRAM, KCMPROTO_CONNECTED);

	if (prog < 0)
		die("loading the BPF parser");
	if (mux < 0)
		die("socket(AF_KCM)");
	for (int i = 0; i < n; i++) {
		struct kcm_attach a = { .fd = conns[i], .bpf_fd = prog };

		if (ioctl(mux, SIOCKCMATTACH, &a))
			die("SIOCKCMATTACH");
	}
	close(prog);
	return mux;
}

static int clone_of(int mux)
{
	struct kcm_clone c;

	if (ioctl(mux, SIOCKCMCLONE, &c))
		die("SIOCKCMCLONE");
	return c.fd;
}

static unsigned int body_len(unsigned int id)
{
	return (id * 2654435761u) % (MAX_PAYLOAD - 8);
}

static void fill(struct request *r, unsigned int id)
{
	unsigned int n = body_len(id);

	r->len = htonl(4 + n);
	r->id = htonl(id);
	for (unsigned int i = 0; i < n; i++)
		r->body[i] = (unsigned char)(id + i);
}

static int valid(const struct request *r, ssize_t got)
{
	unsigned int id = ntohl(r->id), n;

	if (got < 8 || id >= nmsgs)
		return 0;
	n = body_len(id);
	if ((size_t)got != 8 + n || ntohl(r->len) != 4 + n)
		return 0;
	for (unsigned int i = 0; i < n; i++)
		if (r->body[i] != (unsigned char)(id + i))
			return 0;
	return 1;
}

static void *server_worker(void *arg)
{
	int fd = (int)(long)arg;
	struct request r;
	struct timeval tv = { .tv_sec = 5 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		ssize_t n = recv(fd, &r, sizeof(r), 0);

		if (n <= 0)
			break;	/* idle for 5 s: the client is done */
		if (send(fd, &r, n, 0) != n)
			die("echo send");
	}
	return NULL;
}

static int client_fds[64];

static void *client_worker(void *arg)
{
	long t = (long)arg;
	int fd = client_fds[t];
	struct request r;
	struct timeval tv = { .tv_sec = 10 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* Thread t sends requests t, t + T, t + 2T, ... and takes any reply. */
	for (unsigned int id = t; id < nmsgs; id += nthreads) {
		ssize_t n;

		fill(&r, id);
		if (send(fd, &r, 8 + body_len(id), 0) < 0)
			die("send");
		n = recv(fd, &r, sizeof(r), 0);
		if (n < 0)
			die("recv (a reply is missing)");
		pthread_mutex_lock(&answered_lock);
		if (!valid(&r, n))
			bad_replies++;
		else if (answered[ntohl(r.id)]++)
			duplicate_replies++;
		pthread_mutex_unlock(&answered_lock);
	}
	/*
	 * Done: a reply for another thread that was steered here would never be
	 * read. Closing hands messages queued on this socket to its siblings.
	 */
	close(fd);
	return NULL;
}

/* A connected socket of the transport, ready to attach. */
static int ready_to_attach(int fd, int client)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (transport == TRANSPORT_TLS && ktls_demo_on(fd, client))
		die("kernel TLS (TCP_ULP, TLS_TX, TLS_RX)");
	return fd;
}

static int stream_socket(void)
{
	return socket(AF_INET, SOCK_STREAM,
		      transport == TRANSPORT_MPTCP ? IPPROTO_MPTCP : IPPROTO_TCP);
}

static int tcp_listen(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, fd = stream_socket();

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 64))
		die("listen");
	return fd;
}

static int tcp_connect(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	for (int tries = 0; tries < 100; tries++) {
		int fd = stream_socket();

		if (!connect(fd, (struct sockaddr *)&a, sizeof(a)))
			return ready_to_attach(fd, 1);
		close(fd);
		usleep(50000);
	}
	die("connect");
	return -1;
}

int main(int argc, char **argv)
{
	int port, nconns, conns[64];
	pthread_t th[64];
	struct timespec t0, t1;
	double secs;
	unsigned int missing = 0;

	const char *how = getenv("KCM_TRANSPORT");

	if (getenv("KCM_PARSER"))
		parser_path = getenv("KCM_PARSER");
	if (how && !strcmp(how, "mptcp"))
		transport = TRANSPORT_MPTCP;
	else if (how && !strcmp(how, "tls"))
		transport = TRANSPORT_TLS;
	else if (how && *how && strcmp(how, "tcp")) {
		fprintf(stderr, "KCM_TRANSPORT must be tcp, mptcp or tls\n");
		return 2;
	}
	if (argc < 5 || (strcmp(argv[1], "server") && (strcmp(argv[1], "client") || argc < 6))) {
		fprintf(stderr, "usage: [KCM_TRANSPORT=tcp|mptcp|tls] %s server PORT CONNS THREADS\n"
				"       [KCM_TRANSPORT=...] %s client PORT CONNS THREADS MESSAGES\n",
			argv[0], argv[0]);
		return 2;
	}
	port = atoi(argv[2]);
	nconns = atoi(argv[3]);
	nthreads = atoi(argv[4]);
	if (nconns < 1 || nconns > 64 || nthreads < 1 || nthreads > 64)
		return 2;

	if (!strcmp(argv[1], "server")) {
		int lfd = tcp_listen(port);

		for (int i = 0; i < nconns; i++) {
			conns[i] = accept(lfd, NULL, NULL);
			if (conns[i] < 0)
				die("accept");
			ready_to_attach(conns[i], 0);
		}
		kcm_mux = make_mux(conns, nconns);
		printf("kcm_echo server: %d %s connections on one multiplexor, %d threads\n",
		       nconns, how && *how ? how : "tcp", nthreads);
		for (long t = 0; t < nthreads; t++)
			pthread_create(&th[t], NULL, server_worker,
				       (void *)(long)(t ? clone_of(kcm_mux) : kcm_mux));
		for (int t = 0; t < nthreads; t++)
			pthread_join(th[t], NULL);
		return 0;
	}

	nmsgs = atoi(argv[5]);
	answered = calloc(nmsgs, 1);
	for (int i = 0; i < nconns; i++)
		conns[i] = tcp_connect(port);
	kcm_mux = make_mux(conns, nconns);
	for (int t = 0; t < nthreads; t++)
		client_fds[t] = t ? clone_of(kcm_mux) : kcm_mux;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long t = 0; t < nthreads; t++)
		pthread_create(&th[t], NULL, client_worker, (void *)t);
	for (int t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	for (unsigned int id = 0; id < nmsgs; id++)
		missing += !answered[id];
	printf("kcm_echo client: %u requests from %d threads over %d connections: "
	       "%u answered, %lu bad, %lu duplicate, %u missing (%.0f round trips/s)\n",
	       nmsgs, nthreads, nconns, nmsgs - missing, bad_replies, duplicate_replies, missing,
	       nmsgs / secs);
	return missing || bad_replies || duplicate_replies ? 1 : 0;
}
