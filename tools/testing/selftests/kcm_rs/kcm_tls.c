// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel TLS sockets as psocks: a TCP socket with the "tls" ULP set up for
 * receive and transmit is attached; the multiplexor parses the decrypted
 * stream and its sends are encrypted. The peer is a kTLS socket with the
 * mirrored keys (fixed test keys, one per direction). net/kcm attaches such
 * a socket too, but parses its ciphertext: these tests are skipped for it.
 */
#include <pthread.h>
#include <linux/tls.h>
#include "kselftest_harness.h"
#include "kcm_util.h"

union tls_crypto {
	struct tls_crypto_info info;
	struct tls12_crypto_info_aes_gcm_128 gcm128;
	struct tls12_crypto_info_aes_gcm_256 gcm256;
};

/* Fixed test keys of one direction: every byte of key, IV and salt from @seed. */
static socklen_t tls_keys(union tls_crypto *c, int version, int cipher, unsigned char seed)
{
	memset(c, 0, sizeof(*c));
	c->info.version = version;
	c->info.cipher_type = cipher;
	if (cipher == TLS_CIPHER_AES_GCM_256) {
		memset(c->gcm256.key, seed, sizeof(c->gcm256.key));
		memset(c->gcm256.iv, seed + 1, sizeof(c->gcm256.iv));
		memset(c->gcm256.salt, seed + 2, sizeof(c->gcm256.salt));
		return sizeof(c->gcm256);
	}
	memset(c->gcm128.key, seed, sizeof(c->gcm128.key));
	memset(c->gcm128.iv, seed + 1, sizeof(c->gcm128.iv));
	memset(c->gcm128.salt, seed + 2, sizeof(c->gcm128.salt));
	return sizeof(c->gcm128);
}

/* The keys of the attached end's transmit direction, and of its receive direction. */
#define SEED_TO_PEER 0x11
#define SEED_FROM_PEER 0x55

/*
 * Puts kernel TLS on @fd: transmit with the keys of @tx_seed and receive with
 * those of @rx_seed (0: that direction is not set up). 0 or -errno.
 */
static int ktls_on(int fd, int version, int cipher, unsigned char tx_seed, unsigned char rx_seed)
{
	union tls_crypto c;
	socklen_t len;

	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")))
		return -errno;
	if (tx_seed) {
		len = tls_keys(&c, version, cipher, tx_seed);
		if (setsockopt(fd, SOL_TLS, TLS_TX, &c, len))
			return -errno;
	}
	if (rx_seed) {
		len = tls_keys(&c, version, cipher, rx_seed);
		if (setsockopt(fd, SOL_TLS, TLS_RX, &c, len))
			return -errno;
	}
	return 0;
}

/* The attached end of a pair (either direction set up) and its mirrored peer. */
static int ktls_pair(int fds[2], int version, int cipher)
{
	if (tcp_pair(AF_INET, fds))
		return -1;
	if (ktls_on(fds[0], version, cipher, SEED_TO_PEER, SEED_FROM_PEER) ||
	    ktls_on(fds[1], version, cipher, SEED_FROM_PEER, SEED_TO_PEER))
		return -1;
	return 0;
}

static int nonblocking(int fd)
{
	return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

FIXTURE(tls)
{
	int kcm, bpf, fds[2];
};

FIXTURE_VARIANT(tls)
{
	int version, cipher;
};

FIXTURE_VARIANT_ADD(tls, tls12_aes_gcm_128)
{
	.version = TLS_1_2_VERSION, .cipher = TLS_CIPHER_AES_GCM_128,
};

FIXTURE_VARIANT_ADD(tls, tls13_aes_gcm_128)
{
	.version = TLS_1_3_VERSION, .cipher = TLS_CIPHER_AES_GCM_128,
};

FIXTURE_VARIANT_ADD(tls, tls13_aes_gcm_256)
{
	.version = TLS_1_3_VERSION, .cipher = TLS_CIPHER_AES_GCM_256,
};

FIXTURE_SETUP(tls)
{
	SKIP_ON_C("parses the ciphertext of a kernel TLS socket");
	self->kcm = socket(AF_KCM, SOCK_DGRAM, 0);
	ASSERT_LE(0, self->kcm);
	self->bpf = load_len_prefix_parser();
	ASSERT_LE(0, self->bpf);
	ASSERT_EQ(0, ktls_pair(self->fds, variant->version, variant->cipher));
}

FIXTURE_TEARDOWN(tls)
{
	if (is_c_provider())
		return;
	close(self->kcm);
	close(self->fds[0]);
	close(self->fds[1]);
	close(self->bpf);
}

static unsigned char buf[256 * 1024];

/* Payload sizes: within a record, several in one record, and over many records. */
static const size_t sizes[] = { 0, 1, 100, 1000, 16380, 16384, 40000, 100000 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* Messages both ways, whole and intact; /proc/net/kcm names the psock TLS. */
TEST_F(tls, roundtrip)
{
	char text[4096];

	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	/* One write holds every message: records and messages do not line up. */
	ASSERT_EQ(0, exchange_sizes(self->kcm, self->fds[1], sizes, NSIZES, buf, sizeof(buf)));
	ASSERT_LT(0, read_file("/proc/net/kcm", text, sizeof(text)));
	EXPECT_NE(NULL, strstr(text, "TLS")) TH_LOG("%s", text);
	EXPECT_EQ(NULL, strstr(text, "RxStop")) TH_LOG("%s", text);
}

/* A second attach of the same TLS socket is EALREADY, here or on another multiplexor. */
TEST_F(tls, attach_twice)
{
	int other = socket(AF_KCM, SOCK_DGRAM, 0);

	ASSERT_LE(0, other);
	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	EXPECT_EQ(-EALREADY, kcm_attach(self->kcm, self->fds[0], self->bpf));
	EXPECT_EQ(-EALREADY, kcm_attach(other, self->fds[0], self->bpf));
	EXPECT_EQ(-ENOENT, kcm_unattach(other, self->fds[0]));
	EXPECT_EQ(0, kcm_unattach(self->kcm, self->fds[0]));
	close(other);
}

/*
 * After unattach the TLS socket is the application's again, at a message
 * boundary with its record sequence intact: it reads and writes records
 * itself, and poll() wakes it (TLS's own record callback is back).
 */
TEST_F(tls, unattach_leaves_socket_usable)
{
	size_t n;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	ASSERT_EQ(0, unattach_round_trip(self->kcm, self->fds[0], self->fds[1], buf, sizeof(buf)));
	/* And it can be attached again, picking up at the next record. */
	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	n = make_frame(buf, 5, 64);
	ASSERT_EQ(0, write_all(self->fds[1], buf, n));
	ASSERT_EQ(1, wait_readable(self->kcm, 20000));
	ASSERT_EQ(n, recv(self->kcm, buf, sizeof(buf), 0));
	ASSERT_TRUE(check_frame(buf, n, 5));
}

/* A socket with TLS set up for one direction only, or not yet, is refused. */
TEST_F(tls, half_configured_refused)
{
	/* Transmit and receive keys: the ULP alone, transmit only, receive only. */
	static const unsigned char seeds[][2] = {
		{ 0, 0 }, { SEED_TO_PEER, 0 }, { 0, SEED_FROM_PEER },
	};

	for (unsigned int i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		int fds[2];

		ASSERT_EQ(0, tcp_pair(AF_INET, fds));
		ASSERT_EQ(0, ktls_on(fds[0], variant->version, variant->cipher, seeds[i][0],
				     seeds[i][1]));
		EXPECT_EQ(-EOPNOTSUPP, kcm_attach(self->kcm, fds[0], self->bpf)) TH_LOG("case %u", i);
		close(fds[0]);
		close(fds[1]);
	}

	/* The fixture's fully set-up socket is taken. */
	EXPECT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
}

/*
 * The message @seq with @payload bytes arrives on @kcm, then an error is
 * posted on the attached socket @fd and its psock stops: nothing more arrives
 * (@kcm is left non-blocking) and /proc/net/kcm says RxStop. Returns the error
 * (SO_ERROR, which clears it; 0 if none came within 10 s), or -1 if the
 * message did not come whole, -2 if more came, -3 if the psock is not stopped.
 */
static int message_then_psock_stops(int kcm, int fd, unsigned int seq, size_t payload)
{
	char text[4096];
	ssize_t n;
	int err = 0;

	if (wait_readable(kcm, 20000) != 1)
		return -1;
	n = recv(kcm, buf, sizeof(buf), 0);
	if (n != payload + 4 || !check_frame(buf, n, seq))
		return -1;
	for (int i = 0; i < 200 && !(err = sockopt_int(fd, SOL_SOCKET, SO_ERROR)); i++)
		usleep(50000);
	if (nonblocking(kcm) || wait_readable(kcm, 500) != 0 ||
	    recv(kcm, buf, sizeof(buf), 0) != -1 || errno != EAGAIN)
		return -2;
	if (read_file("/proc/net/kcm", text, sizeof(text)) <= 0 || !strstr(text, "RxStop"))
		return -3;
	return err;
}

/* Copies TLS records from @from to @to; flips a byte in the body of record @bad (1-based). */
struct relay {
	int from, to, records, bad;
};

static void *relay_records(void *arg)
{
	struct relay *r = arg;
	static unsigned char rec[5 + 16384 + 256];

	for (int i = 1; i <= r->records; i++) {
		size_t len;

		if (read_all(r->from, rec, 5))
			return (void *)1;
		len = (size_t)rec[3] << 8 | rec[4];
		if (len > sizeof(rec) - 5 || read_all(r->from, rec + 5, len))
			return (void *)2;
		if (i == r->bad)
			rec[5 + len / 2] ^= 0x40;
		if (write_all(r->to, rec, 5 + len))
			return (void *)3;
	}
	return NULL;
}

/*
 * A record that does not decrypt breaks the psock: the messages before it
 * arrive, then EBADMSG is posted on the TLS socket, and nothing after it
 * reaches the multiplexor. The peer writes through a relay that corrupts
 * the second record.
 */
TEST_F(tls, corrupted_record_breaks_psock)
{
	int peer[2], attached[2];
	struct relay r;
	pthread_t relay;
	void *ret;
	size_t n;

	/* peer[0] encrypts -> peer[1] (relay) ... attached[1] (relay) -> attached[0]. */
	ASSERT_EQ(0, tcp_pair(AF_INET, peer));
	ASSERT_EQ(0, tcp_pair(AF_INET, attached));
	ASSERT_EQ(0, ktls_on(peer[0], variant->version, variant->cipher, SEED_FROM_PEER, 0));
	ASSERT_EQ(0, ktls_on(attached[0], variant->version, variant->cipher, SEED_TO_PEER,
			     SEED_FROM_PEER));
	ASSERT_EQ(0, kcm_attach(self->kcm, attached[0], self->bpf));
	r = (struct relay){ .from = peer[1], .to = attached[1], .records = 3, .bad = 2 };
	ASSERT_EQ(0, pthread_create(&relay, NULL, relay_records, &r));
	for (unsigned int i = 0; i < 3; i++) {
		n = make_frame(buf, i, 200);
		/* One send, one record. */
		ASSERT_EQ(n, send(peer[0], buf, n, 0));
	}
	ASSERT_EQ(0, pthread_join(relay, &ret));
	ASSERT_EQ(NULL, ret);

	EXPECT_EQ(EBADMSG, message_then_psock_stops(self->kcm, attached[0], 0, 200));
	/* Sends do not go out on the broken psock either. */
	n = make_frame(buf, 9, 10);
	EXPECT_EQ(-1, send(self->kcm, buf, n, MSG_DONTWAIT));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(0, kcm_unattach(self->kcm, attached[0]));
	close(peer[0]);
	close(peer[1]);
	close(attached[0]);
	close(attached[1]);
}

/* Sends one TLS record of @type (kernel TLS frames and encrypts it). */
static ssize_t send_record(int fd, unsigned char type, const void *data, size_t len)
{
	char control[CMSG_SPACE(sizeof(type))] = { 0 };
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control, .msg_controllen = sizeof(control),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_TLS;
	cmsg->cmsg_type = TLS_SET_RECORD_TYPE;
	cmsg->cmsg_len = CMSG_LEN(sizeof(type));
	memcpy(CMSG_DATA(cmsg), &type, sizeof(type));
	return sendmsg(fd, &msg, 0);
}

/* Receives one TLS record; its type goes to @type. */
static ssize_t recv_record(int fd, unsigned char *type, void *data, size_t len)
{
	char control[CMSG_SPACE(sizeof(*type))] = { 0 };
	struct iovec iov = { .iov_base = data, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control, .msg_controllen = sizeof(control),
	};
	struct cmsghdr *cmsg;
	ssize_t n = recvmsg(fd, &msg, 0);

	*type = 0;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (n >= 0 && cmsg && cmsg->cmsg_level == SOL_TLS &&
	    cmsg->cmsg_type == TLS_GET_RECORD_TYPE)
		memcpy(type, CMSG_DATA(cmsg), sizeof(*type));
	return n;
}

/* TLS record (content) types. */
#define TLS_RECORD_ALERT 21
#define TLS_RECORD_DATA 23

/*
 * A record that is not application data (here an alert) cannot be part of a
 * message: the messages before it arrive, EINVAL is posted on the TLS socket
 * and the psock stops there. Nothing is lost: after unattach the application
 * reads the alert itself, with its record type, and then the data behind it.
 */
TEST_F(tls, alert_record_stops_psock_and_stays_readable)
{
	static const unsigned char alert[2] = { 1, 0 }; /* warning, close_notify */
	unsigned char type;
	size_t n;

	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	n = make_frame(buf, 0, 300);
	ASSERT_EQ(n, send(self->fds[1], buf, n, 0));
	ASSERT_EQ(sizeof(alert), send_record(self->fds[1], TLS_RECORD_ALERT, alert, sizeof(alert)));
	n = make_frame(buf, 1, 500);
	ASSERT_EQ(n, send(self->fds[1], buf, n, 0));

	EXPECT_EQ(EINVAL, message_then_psock_stops(self->kcm, self->fds[0], 0, 300));

	ASSERT_EQ(0, kcm_unattach(self->kcm, self->fds[0]));
	ASSERT_EQ(sizeof(alert), recv_record(self->fds[0], &type, buf, sizeof(buf)));
	EXPECT_EQ(TLS_RECORD_ALERT, type);
	EXPECT_EQ(0, memcmp(buf, alert, sizeof(alert)));
	n = recv_record(self->fds[0], &type, buf, sizeof(buf));
	ASSERT_EQ(504, n);
	EXPECT_EQ(TLS_RECORD_DATA, type);
	EXPECT_TRUE(check_frame(buf, n, 1));
}

#define TLS_RECORD_HANDSHAKE 22
#define TLS_HANDSHAKE_KEY_UPDATE 24

/*
 * A TLS 1.3 KeyUpdate from the peer stops the psock like any record that is
 * not data: the messages before it arrive and EINVAL is posted. The
 * application unattaches, reads the KeyUpdate, installs the peer's new key and
 * attaches again; the messages the peer sent under the new key then arrive.
 */
TEST_F(tls, key_update_then_reattach_with_the_new_key)
{
	/* KeyUpdate, 1 byte of body: update_not_requested. */
	static const unsigned char key_update[5] = { TLS_HANDSHAKE_KEY_UPDATE, 0, 0, 1, 0 };
	const unsigned char new_seed = SEED_FROM_PEER + 0x20;
	union tls_crypto c;
	unsigned char type;
	socklen_t len;
	size_t n;

	if (variant->version != TLS_1_3_VERSION)
		SKIP(return, "KeyUpdate is TLS 1.3");
	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	n = make_frame(buf, 0, 300);
	ASSERT_EQ(n, send(self->fds[1], buf, n, 0));
	ASSERT_EQ(sizeof(key_update), send_record(self->fds[1], TLS_RECORD_HANDSHAKE, key_update,
						  sizeof(key_update)));
	len = tls_keys(&c, variant->version, variant->cipher, new_seed);
	ASSERT_EQ(0, setsockopt(self->fds[1], SOL_TLS, TLS_TX, &c, len));
	n = make_frame(buf, 1, 700);
	ASSERT_EQ(n, send(self->fds[1], buf, n, 0));

	EXPECT_EQ(EINVAL, message_then_psock_stops(self->kcm, self->fds[0], 0, 300));

	ASSERT_EQ(0, kcm_unattach(self->kcm, self->fds[0]));
	ASSERT_EQ(sizeof(key_update), recv_record(self->fds[0], &type, buf, sizeof(buf)));
	EXPECT_EQ(TLS_RECORD_HANDSHAKE, type);
	EXPECT_EQ(0, memcmp(buf, key_update, sizeof(key_update)));
	/* Nothing more is read under the old key. */
	ASSERT_EQ(0, nonblocking(self->fds[0]));
	EXPECT_EQ(-1, recv(self->fds[0], buf, sizeof(buf), 0));
	EXPECT_EQ(EKEYEXPIRED, errno);
	len = tls_keys(&c, variant->version, variant->cipher, new_seed);
	ASSERT_EQ(0, setsockopt(self->fds[0], SOL_TLS, TLS_RX, &c, len));

	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	ASSERT_EQ(1, wait_readable(self->kcm, 20000));
	n = recv(self->kcm, buf, sizeof(buf), 0);
	ASSERT_EQ(704, n);
	EXPECT_TRUE(check_frame(buf, n, 1));
}

/*
 * A TLS, a TCP and an MPTCP psock on one multiplexor: messages from all three
 * arrive whole, and sends spread over all three.
 */
TEST_F(tls, mixed_with_tcp_and_mptcp)
{
	int tcp[2], mptcp[2], got[3] = { 0 }, sent[3] = { 0 };
	const int each = 30;
	size_t n;

	ASSERT_EQ(0, tcp_pair(AF_INET, tcp));
	ASSERT_EQ(0, stream_pair(AF_INET, IPPROTO_MPTCP, mptcp));
	int peers[3] = { self->fds[1], tcp[1], mptcp[1] };

	ASSERT_EQ(0, kcm_attach(self->kcm, self->fds[0], self->bpf));
	ASSERT_EQ(0, kcm_attach(self->kcm, tcp[0], self->bpf));
	ASSERT_EQ(0, kcm_attach(self->kcm, mptcp[0], self->bpf));
	/* Peer k sends messages k * 1000 + i, of 100 * k + i payload bytes. */
	for (int i = 0; i < each; i++) {
		for (int k = 0; k < 3; k++) {
			n = make_frame(buf, k * 1000 + i, 100 * k + i);
			ASSERT_EQ(0, write_all(peers[k], buf, n));
		}
	}
	for (int i = 0; i < 3 * each; i++) {
		uint32_t be;
		unsigned int k, seq;

		ASSERT_EQ(1, wait_readable(self->kcm, 20000));
		n = recv(self->kcm, buf, sizeof(buf), 0);
		ASSERT_LE(4, n);
		memcpy(&be, buf, 4);
		k = ntohl(be) / 100;
		ASSERT_GT(3, k);
		seq = k * 1000 + ntohl(be) % 100;
		ASSERT_TRUE(check_frame(buf, n, seq));
		got[k]++;
	}
	for (int k = 0; k < 3; k++)
		EXPECT_EQ(each, got[k]);
	/* Sends spread over the psocks; each peer gets whole messages. */
	for (int i = 0; i < 3 * each; i++) {
		n = make_frame(buf, 500 + i, 64);
		ASSERT_EQ(n, send(self->kcm, buf, n, 0));
	}
	for (int total = 0; total < 3 * each;) {
		struct pollfd p[3];

		for (int k = 0; k < 3; k++)
			p[k] = (struct pollfd){ .fd = peers[k], .events = POLLIN };
		ASSERT_LT(0, poll(p, 3, 20000));
		for (int k = 0; k < 3; k++) {
			uint32_t be;

			if (!(p[k].revents & POLLIN))
				continue;
			ASSERT_EQ(0, read_all(peers[k], buf, 68));
			memcpy(&be, buf, 4);
			ASSERT_EQ(64, ntohl(be));
			sent[k]++;
			total++;
		}
	}
	for (int k = 0; k < 3; k++)
		EXPECT_LT(0, sent[k]);
	close(tcp[0]);
	close(tcp[1]);
	close(mptcp[0]);
	close(mptcp[1]);
}

TEST_HARNESS_MAIN
