/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel TLS with fixed demo keys, for the samples and the benchmark: TLS 1.3
 * with AES-GCM-128 in both directions. Client-to-server keys are bytes of
 * 0x11, server-to-client keys bytes of 0x22 (key, IV and salt alike), so the
 * two ends of a connection agree. Never use fixed keys for real traffic: an
 * application takes them from its TLS handshake (a TLS library with kTLS
 * support) and then hands the socket to KCM.
 */
#ifndef KTLS_DEMO_KEYS_H
#define KTLS_DEMO_KEYS_H

#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <linux/tls.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/*
 * Puts kernel TLS on the connected socket @fd, the client end of its
 * connection when @client is non-zero: 0, or -1 with errno set.
 */
static inline int ktls_demo_on(int fd, int client)
{
	struct tls12_crypto_info_aes_gcm_128 keys[2];

	for (int dir = 0; dir < 2; dir++) {
		unsigned char seed = dir ? 0x22 : 0x11;

		memset(&keys[dir], 0, sizeof(keys[dir]));
		keys[dir].info.version = TLS_1_3_VERSION;
		keys[dir].info.cipher_type = TLS_CIPHER_AES_GCM_128;
		memset(keys[dir].key, seed, sizeof(keys[dir].key));
		memset(keys[dir].iv, seed, sizeof(keys[dir].iv));
		memset(keys[dir].salt, seed, sizeof(keys[dir].salt));
	}
	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) ||
	    setsockopt(fd, SOL_TLS, TLS_TX, &keys[client ? 0 : 1], sizeof(keys[0])) ||
	    setsockopt(fd, SOL_TLS, TLS_RX, &keys[client ? 1 : 0], sizeof(keys[0])))
		return -1;
	return 0;
}

#endif /* KTLS_DEMO_KEYS_H */
