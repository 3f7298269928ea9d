// SPDX-License-Identifier: GPL-2.0
/*
 * The KCM message parser of the samples: a message is a 4-byte big-endian
 * payload length followed by the payload. Returns the whole message length,
 * or 0 while fewer than 4 bytes have arrived.
 *
 * Build: clang -O2 -target bpf -c kcm_len_parser.bpf.c -o kcm_len_parser.bpf.o
 */
#include <linux/bpf.h>
#include <linux/types.h>

static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to,
				  __u32 len) = (void *)BPF_FUNC_skb_load_bytes;

__attribute__((section("socket"), used))
int kcm_len_parser(struct __sk_buff *skb)
{
	__u32 len;

	if (bpf_skb_load_bytes(skb, 0, &len, sizeof(len)) < 0)
		return 0;
	return __builtin_bswap32(len) + sizeof(len);
}

__attribute__((section("license"), used))
char _license[] = "GPL";
