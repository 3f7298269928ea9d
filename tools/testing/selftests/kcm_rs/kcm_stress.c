// SPDX-License-Identifier: GPL-2.0
/*
 * Stress test of one multiplexor: every operation of the AF_KCM API at once,
 * with every message numbered and checksummed.
 *
 * Receive side: NSLOTS TCP connections are attached; the peer of each writes
 * framed messages with random sizes and random segmentation. Reader threads
 * take them with recv, recvmmsg, MSG_PEEK then recv, and splice; a thread
 * toggles KCM_RECV_DISABLE on the readers; a thread clones sockets, reads a
 * little from them and closes them (their queued messages must move to the
 * others); a churn thread unattaches and reattaches connections (reading what
 * is left of the stream itself) and retires connections whose peer closes.
 * Send side: sender threads (send, sendmmsg, MSG_MORE parts) and short-lived
 * clones send numbered messages; the peers read and check them.
 *
 * At the end: every message a peer wrote reached a reader exactly once and
 * intact, or was read from the stream after an unattach, or was the one
 * message being assembled when its connection was unattached (dropped, as
 * documented); every message whose send succeeded reached a peer exactly once.
 *
 * KCM_STRESS_SECONDS (default 20) bounds the run; KCM_STRESS_SEED makes the
 * random choices reproducible (the seed is printed).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "kselftest_harness.h"
#include "kcm_util.h"

#define RX_MAGIC 0x4b434d52u	/* "KCMR": peer to KCM */
#define TX_MAGIC 0x4b434d54u	/* "KCMT": KCM to peer */
#define SYNC_SEQ 0xffffffffu	/* marks the end of a drained stream */
#define HDR 16			/* magic, stream, seq, checksum */
#define MAX_PAYLOAD 65536
#define MAX_FRAME (4 + MAX_PAYLOAD)
#define MAX_SEQ (1u << 18)
#define MAX_STREAMS 1024
#define NSLOTS 4
#define NREADERS 4
#define NSENDERS 3
#define CLONE_SENDER NSENDERS	/* stream id of the short-lived clones' sends */
#define NTX (NSENDERS + 1)

/* What became of a message of the receive side. */
enum rx_fate { RX_UNSEEN, RX_BY_KCM, RX_BY_USER, RX_DROPPED };

struct stress;

struct slot {
	struct stress *st;
	int kcm_end, peer_end;	/* kcm_end attached; peer_end writes and reads */
	uint32_t stream;
	pthread_t writer, peer_reader;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int pause_req, paused, stop;
	uint32_t next_seq;	/* messages 0..next_seq-1 are written whole */
	unsigned int seed;
};

struct stress {
	int type, family, bpf;
	int kcm;		/* the first socket, kept open throughout */
	int readers[NREADERS];
	struct slot slots[NSLOTS];
	_Atomic(uint8_t) *rx_fate[MAX_STREAMS];
	atomic_uint rx_written_max[MAX_STREAMS];
	atomic_uint nstreams;
	_Atomic(uint8_t) *tx_sent[NTX], *tx_got[NTX];
	atomic_int stop_senders, stop_readers, stop_churn;
	atomic_int errors;
	char first_error[256];
	pthread_mutex_t error_lock;
	atomic_ulong n_send_wait, n_rx_kcm, n_rx_user, n_dropped, n_tx, n_unattach, n_retire,
		n_clone, n_peek, n_splice, n_toggle;
	unsigned int seed;
};

static void fail(struct stress *st, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&st->error_lock);
	if (!st->errors++) {
		va_start(ap, fmt);
		vsnprintf(st->first_error, sizeof(st->first_error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&st->error_lock);
}

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

static void put32(unsigned char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return ntohl(v);
}

/* Builds a frame: length, magic, stream, seq, checksum, body. Returns its size. */
static size_t build(unsigned char *buf, uint32_t magic, uint32_t stream, uint32_t seq,
		    size_t payload)
{
	unsigned char fill = (unsigned char)(stream * 73 + seq * 151);

	put32(buf, payload);
	put32(buf + 4, magic);
	put32(buf + 8, stream);
	put32(buf + 12, seq);
	for (size_t i = HDR; i < payload; i++)
		buf[4 + i] = (unsigned char)(fill + i * 31);
	put32(buf + 16, fnv1a(buf + 4 + HDR, payload - HDR));
	return 4 + payload;
}

/*
 * Checks a whole frame of @len bytes. Returns 1 and its stream and seq when
 * it is intact, 0 otherwise.
 */
static int verify(const unsigned char *buf, size_t len, uint32_t magic, uint32_t *stream,
		  uint32_t *seq)
{
	size_t payload;
	unsigned char fill;

	if (len < 4 + HDR)
		return 0;
	payload = get32(buf);
	if (payload + 4 != len || get32(buf + 4) != magic)
		return 0;
	*stream = get32(buf + 8);
	*seq = get32(buf + 12);
	if (get32(buf + 16) != fnv1a(buf + 4 + HDR, payload - HDR))
		return 0;
	fill = (unsigned char)(*stream * 73 + *seq * 151);
	for (size_t i = HDR; i < payload; i++)
		if (buf[4 + i] != (unsigned char)(fill + i * 31))
			return 0;
	return 1;
}

static size_t random_payload(unsigned int *seed)
{
	unsigned int r = rand_r(seed) % 100;

	if (r < 70)
		return HDR + rand_r(seed) % 200;
	if (r < 95)
		return HDR + rand_r(seed) % 4000;
	return HDR + rand_r(seed) % (MAX_PAYLOAD - HDR + 1);
}

/* A message of the receive side arrived by @how; exactly once or it is an error. */
static void rx_mark(struct stress *st, uint32_t stream, uint32_t seq, uint8_t how)
{
	uint8_t unseen = RX_UNSEEN;

	if (stream >= atomic_load(&st->nstreams) || seq >= MAX_SEQ) {
		fail(st, "message of unknown stream %u seq %u", stream, seq);
		return;
	}
	if (!atomic_compare_exchange_strong(&st->rx_fate[stream][seq], &unseen, how))
		fail(st, "stream %u seq %u arrived twice (fates %u and %u)", stream, seq,
		     unseen, how);
}

/* A message a KCM socket handed over. */
static void rx_take(struct stress *st, const unsigned char *buf, size_t len)
{
	uint32_t stream, seq;

	/* SOCK_SEQPACKET: the end of a message spliced whole elsewhere (moved by
	 * KCM_RECV_DISABLE before its recvmsg). */
	if (len == 0 && st->type == SOCK_SEQPACKET)
		return;
	if (!verify(buf, len, RX_MAGIC, &stream, &seq)) {
		fail(st, "a KCM socket returned a damaged message of %zu bytes", len);
		return;
	}
	rx_mark(st, stream, seq, RX_BY_KCM);
	atomic_fetch_add(&st->n_rx_kcm, 1);
}

static void tx_mark(struct stress *st, _Atomic(uint8_t) **table, uint32_t sender, uint32_t seq,
		    const char *what)
{
	uint8_t zero = 0;

	if (sender >= NTX || seq >= MAX_SEQ) {
		fail(st, "%s: unknown sender %u seq %u", what, sender, seq);
		return;
	}
	if (!atomic_compare_exchange_strong(&table[sender][seq], &zero, 1))
		fail(st, "%s twice: sender %u seq %u", what, sender, seq);
}

static int now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_timeouts(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* ---- the peers ---------------------------------------------------------- */

/* Writes framed messages with random segmentation; pauses at message ends on request. */
static void *slot_writer(void *arg)
{
	struct slot *sl = arg;
	struct stress *st = sl->st;
	unsigned char *buf = malloc(8 * MAX_FRAME);

	for (;;) {
		size_t len = 0, off = 0;
		uint32_t first, n;

		pthread_mutex_lock(&sl->lock);
		while (sl->pause_req && !sl->stop) {
			sl->paused = 1;
			pthread_cond_broadcast(&sl->cond);
			pthread_cond_wait(&sl->cond, &sl->lock);
		}
		sl->paused = 0;
		if (sl->stop || sl->next_seq + 8 >= MAX_SEQ) {
			sl->paused = 1;
			pthread_cond_broadcast(&sl->cond);
			pthread_mutex_unlock(&sl->lock);
			break;
		}
		first = sl->next_seq;
		pthread_mutex_unlock(&sl->lock);

		n = 1 + rand_r(&sl->seed) % 8;
		for (uint32_t i = 0; i < n; i++)
			len += build(buf + len, RX_MAGIC, sl->stream, first + i,
				     random_payload(&sl->seed));
		while (off < len) {
			size_t chunk = len - off;
			ssize_t w;

			switch (rand_r(&sl->seed) % 4) {
			case 0:
				chunk = 1 + rand_r(&sl->seed) % 7;
				break;
			case 1:
				chunk = 1 + rand_r(&sl->seed) % 1500;
				break;
			}
			if (chunk > len - off)
				chunk = len - off;
			w = write(sl->peer_end, buf + off, chunk);
			if (w <= 0) {
				fail(st, "peer write on stream %u: %s", sl->stream, strerror(errno));
				goto out;
			}
			off += w;
			if (rand_r(&sl->seed) % 16 == 0)
				usleep(rand_r(&sl->seed) % 300);
		}
		pthread_mutex_lock(&sl->lock);
		sl->next_seq = first + n;
		atomic_store(&st->rx_written_max[sl->stream], first + n);
		pthread_mutex_unlock(&sl->lock);
		/* Leave the CPUs some time for the send side too. */
		usleep(rand_r(&sl->seed) % 2000);
	}
out:
	free(buf);
	return NULL;
}

/* Reads what the multiplexor sends on this connection until EOF, checking every frame. */
static void *slot_peer_reader(void *arg)
{
	struct slot *sl = arg;
	struct stress *st = sl->st;
	size_t cap = 4 * MAX_FRAME, have = 0;
	unsigned char *buf = malloc(cap);

	for (;;) {
		ssize_t n = read(sl->peer_end, buf + have, cap - have);
		size_t off = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail(st, "peer read: %s", strerror(errno));
			break;
		}
		if (n == 0) {
			if (have)
				fail(st, "stream %u ended inside a message (%zu bytes)", sl->stream,
				     have);
			break;
		}
		have += n;
		while (have - off >= 4) {
			size_t flen = 4 + (size_t)get32(buf + off);
			uint32_t sender, seq;

			if (flen > MAX_FRAME) {
				fail(st, "peer of stream %u: bad length %zu", sl->stream, flen);
				goto out;
			}
			if (have - off < flen)
				break;
			if (!verify(buf + off, flen, TX_MAGIC, &sender, &seq)) {
				fail(st, "peer of stream %u got a damaged message", sl->stream);
				goto out;
			}
			tx_mark(st, st->tx_got, sender, seq, "peer got a message");
			off += flen;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
out:
	free(buf);
	return NULL;
}

static void slot_pause(struct slot *sl)
{
	pthread_mutex_lock(&sl->lock);
	sl->pause_req = 1;
	while (!sl->paused)
		pthread_cond_wait(&sl->cond, &sl->lock);
	pthread_mutex_unlock(&sl->lock);
}

static void slot_resume(struct slot *sl)
{
	pthread_mutex_lock(&sl->lock);
	sl->pause_req = 0;
	pthread_cond_broadcast(&sl->cond);
	pthread_mutex_unlock(&sl->lock);
}

/* A new connection in @sl, attached, with its peer threads running. */
static int slot_open(struct stress *st, struct slot *sl)
{
	int fds[2];
	uint32_t stream = atomic_load(&st->nstreams);

	if (stream >= MAX_STREAMS)
		return -1;
	if (tcp_pair(st->family, fds))
		return -1;
	st->rx_fate[stream] = calloc(MAX_SEQ, 1);
	if (!st->rx_fate[stream])
		return -1;
	atomic_store(&st->nstreams, stream + 1);
	sl->st = st;
	sl->kcm_end = fds[0];
	sl->peer_end = fds[1];
	sl->stream = stream;
	sl->pause_req = sl->paused = sl->stop = 0;
	sl->next_seq = 0;
	sl->seed = st->seed * 7919 + stream;
	if (kcm_attach(st->kcm, sl->kcm_end, st->bpf))
		return -1;
	pthread_create(&sl->writer, NULL, slot_writer, sl);
	pthread_create(&sl->peer_reader, NULL, slot_peer_reader, sl);
	return 0;
}

/* ---- the churn of connections -------------------------------------------- */

/*
 * Unattaches the connection, reads what the multiplexor left in the stream up
 * to a sync frame, and attaches it again at a message boundary.
 */
static void slot_unattach_reattach(struct stress *st, struct slot *sl)
{
	unsigned char *buf = malloc(16 * MAX_FRAME), sync[4 + HDR];
	size_t have = 0, off = 0, cap = 16 * MAX_FRAME;
	int skipping = 1, done = 0, err, deadline = now_ms() + 30000;
	uint32_t last;

	slot_pause(sl);
	last = sl->next_seq;
	err = kcm_unattach(st->kcm, sl->kcm_end);
	if (err) {
		fail(st, "unattach: %s", strerror(-err));
		goto out;
	}
	atomic_fetch_add(&st->n_unattach, 1);
	write_all(sl->peer_end, sync, build(sync, RX_MAGIC, sl->stream, SYNC_SEQ, HDR));
	while (!done) {
		struct pollfd p = { .fd = sl->kcm_end, .events = POLLIN };
		ssize_t n;

		if (now_ms() > deadline) {
			fail(st, "stream %u: sync frame never came after unattach (%zu bytes read, "
			     "%zu parsed, %s)", sl->stream, have, off,
			     skipping ? "no whole message yet" : "messages found");
			goto out;
		}
		if (poll(&p, 1, 1000) <= 0)
			continue;
		n = read(sl->kcm_end, buf + have, cap - have);
		if (n <= 0) {
			fail(st, "read after unattach: %s", n ? strerror(errno) : "EOF");
			goto out;
		}
		have += n;
		/* The stream starts inside the dropped message, if one was being assembled. */
		while (!done && have - off >= 4 + HDR) {
			size_t flen = 4 + (size_t)get32(buf + off);
			uint32_t stream, seq;
			/* Only a frame header of this stream starts a frame (the body bytes of a
			 * message never form the magic). */
			int header = flen <= MAX_FRAME && get32(buf + off + 4) == RX_MAGIC &&
				     get32(buf + off + 8) == sl->stream;

			if (header && have - off < flen)
				break;
			if (header && verify(buf + off, flen, RX_MAGIC, &stream, &seq) &&
			    stream == sl->stream) {
				uint32_t next = seq == SYNC_SEQ ? last : seq;

				if (skipping && off > 0) {
					/* The message before the first whole one was dropped. */
					if (next == 0)
						fail(st, "stream %u: bytes before its first message",
						     sl->stream);
					else
						rx_mark(st, sl->stream, next - 1, RX_DROPPED);
					atomic_fetch_add(&st->n_dropped, 1);
				}
				skipping = 0;
				if (seq == SYNC_SEQ) {
					done = 1;
				} else {
					rx_mark(st, stream, seq, RX_BY_USER);
					atomic_fetch_add(&st->n_rx_user, 1);
				}
				off += flen;
				continue;
			}
			if (!skipping) {
				fail(st, "stream %u damaged after unattach", sl->stream);
				goto out;
			}
			off++;
		}
		if (off > cap / 2) {
			memmove(buf, buf + off, have - off);
			have -= off;
			off = 0;
		}
	}
	if (have != off)
		fail(st, "stream %u: bytes after the sync frame", sl->stream);
	err = kcm_attach(st->kcm, sl->kcm_end, st->bpf);
	if (err)
		fail(st, "reattach: %s", strerror(-err));
out:
	slot_resume(sl);
	free(buf);
}

/*
 * Waits until every message of @stream below @upto was accounted for. A stream
 * that still makes progress is slow, not stuck: the wait fails only when no
 * message of it arrived for @idle_ms (the receive queue of a connection can hold
 * megabytes, which a loaded machine takes a while to parse). Logs slow waits.
 */
static int wait_stream_accounted(struct stress *st, uint32_t stream, uint32_t upto, int idle_ms)
{
	int start = now_ms(), last_progress = start;

	for (uint32_t seq = 0; seq < upto; seq++) {
		if (atomic_load(&st->rx_fate[stream][seq]) != RX_UNSEEN)
			continue;
		while (atomic_load(&st->rx_fate[stream][seq]) == RX_UNSEEN) {
			if (now_ms() - last_progress > idle_ms)
				return -1;
			usleep(1000);
		}
		last_progress = now_ms();
	}
	if (now_ms() - start > 10000)
		fprintf(stderr, "# stream %u: its last messages took %d ms to arrive\n", stream,
			now_ms() - start);
	return 0;
}

/* What a stuck stream left behind: its first unaccounted messages and the multiplexor's state. */
static void dump_stuck(struct stress *st, struct slot *sl, uint32_t upto)
{
	char text[16384];
	int fd, missing = 0;

	for (uint32_t seq = 0; seq < upto; seq++)
		if (atomic_load(&st->rx_fate[sl->stream][seq]) == RX_UNSEEN && missing++ < 8)
			fprintf(stderr, "# stream %u seq %u of %u unaccounted\n", sl->stream, seq,
				upto);
	fprintf(stderr, "# %d unaccounted\n", missing);
	/* Twice, a second apart: whether the psocks still make progress. */
	for (int i = 0; i < 2; i++) {
		if (read_file("/proc/net/kcm", text, sizeof(text)) > 0)
			fprintf(stderr, "# /proc/net/kcm:\n%s", text);
		sleep(1);
	}
	/* Every task's stack and the busy workqueues, in the kernel log. */
	fd = open("/proc/sysrq-trigger", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "t", 1) != 1)
			fprintf(stderr, "# sysrq: %s\n", strerror(errno));
		close(fd);
	}
}

/* The peer closes its side; every message it wrote before must still arrive. */
static void slot_retire(struct stress *st, struct slot *sl)
{
	uint32_t last;
	int err;

	pthread_mutex_lock(&sl->lock);
	sl->stop = 1;
	pthread_cond_broadcast(&sl->cond);
	pthread_mutex_unlock(&sl->lock);
	pthread_join(sl->writer, NULL);
	last = sl->next_seq;
	shutdown(sl->peer_end, SHUT_WR);
	if (wait_stream_accounted(st, sl->stream, last, 30000)) {
		fail(st, "stream %u: messages before the peer's FIN stopped arriving", sl->stream);
		dump_stuck(st, sl, last);
	}
	err = kcm_unattach(st->kcm, sl->kcm_end);
	if (err)
		fail(st, "unattach of a retired connection: %s", strerror(-err));
	close(sl->kcm_end);
	pthread_join(sl->peer_reader, NULL);
	close(sl->peer_end);
	atomic_fetch_add(&st->n_retire, 1);
	if (slot_open(st, sl))
		fail(st, "a new connection: %s", strerror(errno));
}

static void *churn_thread(void *arg)
{
	struct stress *st = arg;
	unsigned int seed = st->seed ^ 0xc0ffee;

	/* Two unattach-and-reattach rounds, then a retirement, over and over: each kind
	 * happens in every run, whatever the seed. */
	for (unsigned int op = 0; !atomic_load(&st->stop_churn) && !atomic_load(&st->errors);
	     op++) {
		struct slot *sl = &st->slots[rand_r(&seed) % NSLOTS];

		usleep(20000 + rand_r(&seed) % 80000);
		if (op % 3 != 2)
			slot_unattach_reattach(st, sl);
		else
			slot_retire(st, sl);
	}
	return NULL;
}

/* ---- the readers --------------------------------------------------------- */

struct reader {
	struct stress *st;
	int fd, mode;
};

static unsigned char *recv_one(struct stress *st, int fd, unsigned char *buf, int flags,
			       ssize_t *len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = MAX_FRAME };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	*len = recvmsg(fd, &msg, flags);
	if (*len < 0) {
		if (errno != EAGAIN && errno != EINTR)
			fail(st, "recvmsg: %s", strerror(errno));
		return NULL;
	}
	/* As net/kcm, MSG_PEEK does not tell where the message ends. */
	if (st->type == SOCK_SEQPACKET && *len > 0 && !(flags & MSG_PEEK) &&
	    !(msg.msg_flags & MSG_EOR))
		fail(st, "SOCK_SEQPACKET message without MSG_EOR");
	if (msg.msg_flags & MSG_TRUNC)
		fail(st, "message truncated");
	return buf;
}

static void read_splice(struct reader *r, unsigned char *buf, int pipefd[2])
{
	struct stress *st = r->st;
	struct pollfd p = { .fd = r->fd, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, 100) <= 0)
		return;
	/* The whole message in one splice: a message partly read could be moved to
	 * another socket by KCM_RECV_DISABLE, with its read offset (as net/kcm). */
	n = splice(r->fd, NULL, pipefd[1], NULL, MAX_FRAME, SPLICE_F_NONBLOCK);
	if (n < 0 && errno == EAGAIN)
		return;	/* moved to another socket meanwhile */
	if (n == 0) {
		/* A message spliced to its end on another socket and moved here: the
		 * recvmsg that ends it (0 bytes, MSG_EOR) or the next message. */
		if (recv_one(st, r->fd, buf, MSG_DONTWAIT, &n) && n > 0)
			rx_take(st, buf, n);
		return;
	}
	if (n < 0 || read_all(pipefd[0], buf, n)) {
		fail(st, "splice: %zd %s", n, strerror(errno));
		return;
	}
	atomic_fetch_add(&st->n_splice, 1);
	rx_take(st, buf, n);
	/* The message ends with a recvmsg; it may instead hand over the next message. */
	if (recv_one(st, r->fd, buf, MSG_DONTWAIT, &n) && n > 0)
		rx_take(st, buf, n);
}

static void *reader_thread(void *arg)
{
	struct reader *r = arg;
	struct stress *st = r->st;
	unsigned char *buf = malloc(MAX_FRAME), *bufs[8];
	struct mmsghdr mm[8];
	struct iovec iov[8];
	int pipefd[2] = { -1, -1 };
	ssize_t n;

	for (int i = 0; i < 8; i++)
		bufs[i] = malloc(MAX_FRAME);
	if (r->mode == 3 && st->type == SOCK_SEQPACKET) {
		if (pipe(pipefd) || fcntl(pipefd[1], F_SETPIPE_SZ, 1 << 20) < 0)
			fail(st, "pipe: %s", strerror(errno));
	}
	set_timeouts(r->fd, 100);
	while (!atomic_load(&st->stop_readers)) {
		switch (r->mode) {
		case 0:
			if (recv_one(st, r->fd, buf, 0, &n) && n > 0)
				rx_take(st, buf, n);
			break;
		case 1: {
			struct timespec ts = { 0, 100000000 };
			int got;

			memset(mm, 0, sizeof(mm));
			for (int i = 0; i < 8; i++) {
				iov[i].iov_base = bufs[i];
				iov[i].iov_len = MAX_FRAME;
				mm[i].msg_hdr.msg_iov = &iov[i];
				mm[i].msg_hdr.msg_iovlen = 1;
			}
			got = recvmmsg(r->fd, mm, 8, MSG_WAITFORONE, &ts);
			if (got < 0 && errno != EAGAIN && errno != EINTR)
				fail(st, "recvmmsg: %s", strerror(errno));
			for (int i = 0; i < got; i++)
				rx_take(st, bufs[i], mm[i].msg_len);
			break;
		}
		case 2: {
			uint32_t stream, seq;

			/* The peeked message is intact; the next recv takes a message (maybe
			 * another: RECV_DISABLE can move the queue meanwhile). */
			if (!recv_one(st, r->fd, buf, MSG_PEEK, &n) || !n)
				break;
			if (!verify(buf, n, RX_MAGIC, &stream, &seq))
				fail(st, "MSG_PEEK returned a damaged message");
			atomic_fetch_add(&st->n_peek, 1);
			if (recv_one(st, r->fd, buf, MSG_DONTWAIT, &n) && n > 0)
				rx_take(st, buf, n);
			break;
		}
		default:
			if (pipefd[0] >= 0)
				read_splice(r, buf, pipefd);
			else if (recv_one(st, r->fd, buf, 0, &n) && n > 0)
				rx_take(st, buf, n);
			break;
		}
	}
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	for (int i = 0; i < 8; i++)
		free(bufs[i]);
	free(buf);
	return NULL;
}

static void *toggle_thread(void *arg)
{
	struct stress *st = arg;
	unsigned int seed = st->seed ^ 0x7061;

	while (!atomic_load(&st->stop_senders)) {
		int fd = st->readers[rand_r(&seed) % NREADERS];

		if (kcm_set_recv_disabled(fd, 1))
			fail(st, "KCM_RECV_DISABLE on: %s", strerror(errno));
		usleep(rand_r(&seed) % 5000);
		if (kcm_set_recv_disabled(fd, 0))
			fail(st, "KCM_RECV_DISABLE off: %s", strerror(errno));
		atomic_fetch_add(&st->n_toggle, 1);
		usleep(rand_r(&seed) % 5000);
	}
	return NULL;
}

/* ---- the senders --------------------------------------------------------- */

static int end_flags(struct stress *st)
{
	return st->type == SOCK_SEQPACKET ? MSG_EOR : 0;
}

/* Sends one message whole or in two parts (MSG_MORE); 0 once it went out. */
static int send_frame(struct stress *st, int fd, const unsigned char *buf, size_t len, int parts)
{
	size_t first = parts ? len / 2 : 0;

	while (first) {
		ssize_t n = send(fd, buf, first, st->type == SOCK_DGRAM ? MSG_MORE : 0);

		if (n == (ssize_t)first)
			break;
		if (n >= 0 || (errno != EAGAIN && errno != EINTR)) {
			fail(st, "send of a first part: %zd %s", n, strerror(errno));
			return -1;
		}
		if (atomic_load(&st->stop_senders))
			return -1;
	}
	for (;;) {
		ssize_t n = send(fd, buf + first, len - first, end_flags(st));

		if (n == (ssize_t)(len - first))
			return 0;
		if (n >= 0 || (errno != EAGAIN && errno != EINTR)) {
			fail(st, "send: %zd %s", n, strerror(errno));
			return -1;
		}
		atomic_fetch_add(&st->n_send_wait, 1);
		if (atomic_load(&st->stop_senders))
			return -1;
	}
}

struct sender {
	struct stress *st;
	int fd, id;
};

static void *sender_thread(void *arg)
{
	struct sender *s = arg;
	struct stress *st = s->st;
	unsigned int seed = st->seed * 31 + s->id;
	unsigned char *buf = malloc(4 * MAX_FRAME);
	uint32_t seq = 0;

	set_timeouts(s->fd, 200);
	while (!atomic_load(&st->stop_senders) && seq + 4 < MAX_SEQ) {
		if (s->id % 3 == 1) {
			struct mmsghdr mm[4];
			struct iovec iov[4];
			size_t off = 0;
			int n;

			memset(mm, 0, sizeof(mm));
			for (int i = 0; i < 4; i++) {
				iov[i].iov_base = buf + off;
				iov[i].iov_len = build(buf + off, TX_MAGIC, s->id, seq + i,
						       random_payload(&seed));
				off += iov[i].iov_len;
				mm[i].msg_hdr.msg_iov = &iov[i];
				mm[i].msg_hdr.msg_iovlen = 1;
			}
			n = sendmmsg(s->fd, mm, 4, end_flags(st));
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				fail(st, "sendmmsg: %s", strerror(errno));
			for (int i = 0; i < n; i++) {
				if (mm[i].msg_len != iov[i].iov_len)
					fail(st, "sendmmsg sent %u of %zu", mm[i].msg_len,
					     iov[i].iov_len);
				tx_mark(st, st->tx_sent, s->id, seq + i, "sent");
			}
			if (n > 0)
				seq += n;
			atomic_fetch_add(&st->n_tx, n > 0 ? n : 0);
			continue;
		}
		size_t len = build(buf, TX_MAGIC, s->id, seq, random_payload(&seed));

		if (send_frame(st, s->fd, buf, len, s->id % 3 == 2))
			break;
		tx_mark(st, st->tx_sent, s->id, seq++, "sent");
		atomic_fetch_add(&st->n_tx, 1);
	}
	free(buf);
	return NULL;
}

/* Clones, reads a little, sends a message, disables receive, closes: over and over. */
static void *clone_thread(void *arg)
{
	struct stress *st = arg;
	unsigned int seed = st->seed ^ 0x5eed;
	unsigned char *buf = malloc(MAX_FRAME);
	uint32_t seq = 0;

	while (!atomic_load(&st->stop_senders) && seq < MAX_SEQ) {
		int fd = kcm_clone(st->kcm);
		ssize_t n;

		if (fd < 0) {
			fail(st, "SIOCKCMCLONE: %s", strerror(errno));
			break;
		}
		atomic_fetch_add(&st->n_clone, 1);
		set_timeouts(fd, 200);
		switch (rand_r(&seed) % 4) {
		case 0:
			for (int i = rand_r(&seed) % 4; i > 0; i--)
				if (recv_one(st, fd, buf, MSG_DONTWAIT, &n) && n > 0)
					rx_take(st, buf, n);
			break;
		case 1: {
			size_t len = build(buf, TX_MAGIC, CLONE_SENDER, seq, random_payload(&seed));

			if (!send_frame(st, fd, buf, len, 0)) {
				tx_mark(st, st->tx_sent, CLONE_SENDER, seq++, "sent");
				atomic_fetch_add(&st->n_tx, 1);
			}
			break;
		}
		case 2:
			kcm_set_recv_disabled(fd, 1);
			break;
		default:
			/* Close while messages may be queued on it: they move on. */
			usleep(rand_r(&seed) % 3000);
			break;
		}
		close(fd);
	}
	free(buf);
	return NULL;
}

/* ---- the test ------------------------------------------------------------ */

FIXTURE(stress) {
	struct stress *st;
};

FIXTURE_VARIANT(stress) {
	int family, type;
};

FIXTURE_VARIANT_ADD(stress, ipv4_dgram) { .family = AF_INET, .type = SOCK_DGRAM };
FIXTURE_VARIANT_ADD(stress, ipv6_seqpacket) { .family = AF_INET6, .type = SOCK_SEQPACKET };

FIXTURE_SETUP(stress)
{
	const char *seed = getenv("KCM_STRESS_SEED");

	self->st = calloc(1, sizeof(*self->st));
	ASSERT_NE(NULL, self->st);
	self->st->seed = seed ? strtoul(seed, NULL, 0) : (unsigned int)time(NULL);
	self->st->type = variant->type;
	self->st->family = variant->family;
	pthread_mutex_init(&self->st->error_lock, NULL);
	for (int i = 0; i < NSLOTS; i++) {
		pthread_mutex_init(&self->st->slots[i].lock, NULL);
		pthread_cond_init(&self->st->slots[i].cond, NULL);
	}
}

FIXTURE_TEARDOWN(stress)
{
}

TEST_F_TIMEOUT(stress, everything_at_once, 7200)
{
	struct stress *st = self->st;
	const char *secs = getenv("KCM_STRESS_SECONDS");
	int seconds = secs ? atoi(secs) : 20;
	pthread_t readers[NREADERS], senders[NSENDERS], churn, toggler, cloner;
	struct reader rd[NREADERS];
	struct sender sd[NSENDERS];
	unsigned long total_sent = 0;
	unsigned char probe[64];

	SKIP_ON_C("mis-frames messages that do not start a segment");
	TH_LOG("seed %u (KCM_STRESS_SEED), %d s", st->seed, seconds);
	for (int i = 0; i < NTX; i++) {
		st->tx_sent[i] = calloc(MAX_SEQ, 1);
		st->tx_got[i] = calloc(MAX_SEQ, 1);
		ASSERT_TRUE(st->tx_sent[i] && st->tx_got[i]);
	}
	st->bpf = load_len_prefix_parser();
	ASSERT_LE(0, st->bpf);
	st->kcm = socket(AF_KCM, st->type, KCMPROTO_CONNECTED);
	ASSERT_LE(0, st->kcm);
	for (int i = 0; i < NSLOTS; i++)
		ASSERT_EQ(0, slot_open(st, &st->slots[i]));
	for (int i = 0; i < NREADERS; i++) {
		st->readers[i] = kcm_clone(st->kcm);
		ASSERT_LE(0, st->readers[i]);
		rd[i] = (struct reader){ .st = st, .fd = st->readers[i], .mode = i };
		pthread_create(&readers[i], NULL, reader_thread, &rd[i]);
	}
	/* The first socket only sends and clones: it takes no messages. */
	ASSERT_EQ(0, kcm_set_recv_disabled(st->kcm, 1));
	for (int i = 0; i < NSENDERS; i++) {
		sd[i] = (struct sender){ .st = st, .fd = kcm_clone(st->kcm), .id = i };
		ASSERT_LE(0, sd[i].fd);
		ASSERT_EQ(0, kcm_set_recv_disabled(sd[i].fd, 1));
		pthread_create(&senders[i], NULL, sender_thread, &sd[i]);
	}
	pthread_create(&churn, NULL, churn_thread, st);
	pthread_create(&toggler, NULL, toggle_thread, st);
	pthread_create(&cloner, NULL, clone_thread, st);

	for (int t = 0; t < seconds * 10 && !atomic_load(&st->errors); t++)
		usleep(100000);

	/* Wind down: no more sends, churn or toggles; the peers stop at a message end. */
	atomic_store(&st->stop_senders, 1);
	for (int i = 0; i < NSENDERS; i++)
		pthread_join(senders[i], NULL);
	pthread_join(toggler, NULL);
	pthread_join(cloner, NULL);
	atomic_store(&st->stop_churn, 1);
	pthread_join(churn, NULL);
	for (int i = 0; i < NREADERS; i++)
		EXPECT_EQ(0, kcm_set_recv_disabled(st->readers[i], 0));
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *sl = &st->slots[i];

		pthread_mutex_lock(&sl->lock);
		sl->stop = 1;
		pthread_cond_broadcast(&sl->cond);
		pthread_mutex_unlock(&sl->lock);
		pthread_join(sl->writer, NULL);
	}
	/* Everything written reaches the readers... */
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *sl = &st->slots[i];

		if (wait_stream_accounted(st, sl->stream, sl->next_seq, 60000)) {
			fail(st, "stream %u: messages lost", sl->stream);
			dump_stuck(st, sl, sl->next_seq);
		}
	}
	atomic_store(&st->stop_readers, 1);
	for (int i = 0; i < NREADERS; i++)
		pthread_join(readers[i], NULL);
	/* ...and nothing more is queued anywhere. */
	for (int i = 0; i < NREADERS; i++)
		EXPECT_EQ(-1, recv(st->readers[i], probe, sizeof(probe), MSG_DONTWAIT));
	/* Every message sent reaches a peer: close the connections, the peers read to EOF. */
	for (int i = 0; i < NSENDERS; i++)
		close(sd[i].fd);
	close(st->kcm);
	for (int i = 0; i < NREADERS; i++)
		close(st->readers[i]);
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *sl = &st->slots[i];

		close(sl->kcm_end);
		pthread_join(sl->peer_reader, NULL);
		close(sl->peer_end);
	}
	for (uint32_t s = 0; s < atomic_load(&st->nstreams); s++)
		for (uint32_t q = 0; q < atomic_load(&st->rx_written_max[s]); q++)
			if (atomic_load(&st->rx_fate[s][q]) == RX_UNSEEN)
				fail(st, "stream %u seq %u lost", s, q);
	for (int i = 0; i < NTX; i++)
		for (uint32_t q = 0; q < MAX_SEQ; q++) {
			total_sent += st->tx_sent[i][q];
			if (st->tx_sent[i][q] != st->tx_got[i][q])
				fail(st, "sender %d seq %u: sent %d, received %d", i, q,
				     st->tx_sent[i][q], st->tx_got[i][q]);
		}
	TH_LOG("received %lu via KCM (%lu peeked, %lu spliced), %lu read after %lu unattaches, "
	       "%lu dropped in assembly, %lu connections retired, %lu clones, %lu toggles; "
	       "sent %lu (%lu send timeouts)",
	       st->n_rx_kcm, st->n_peek, st->n_splice, st->n_rx_user, st->n_unattach,
	       st->n_dropped, st->n_retire, st->n_clone, st->n_toggle, total_sent, st->n_send_wait);
	EXPECT_EQ(0, st->errors) TH_LOG("first error: %s (seed %u)", st->first_error, st->seed);
	EXPECT_LT(1000, st->n_rx_kcm);
	EXPECT_LT(100, total_sent);
	EXPECT_LT(0, st->n_unattach);
}

TEST_HARNESS_MAIN
