/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * The flow hash, bit for bit the same as dataplane::maglev::hash_flow so the
 * kernel and the user-space balancer pick the same server for a client:
 *
 *   bytes = source address (4 bytes for IPv4 and IPv4-mapped IPv6,
 *           16 bytes for other IPv6), then the source port as 2 bytes
 *           big-endian when the VIP hashes on the port
 *   h = 0xcbf29ce484222325 ^ seed          (seed = ASCII "halbflow")
 *   for each byte b: h ^= b; h *= 0x100000001b3
 *   h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 33;
 *   h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33
 *
 * A new flow takes Maglev slot (h % M). The outer source address of an
 * encapsulated packet also carries bits of h (halb_encap.h), so a backend's
 * receive hashing spreads flows over its queues.
 */
#ifndef HALB_HASH_H
#define HALB_HASH_H

#include <linux/types.h>

#include "halb_consts.h"
#include "halb_parse.h"

static __always_inline __u64 halb_fnv_word(__u64 h, __u32 word_be)
{
	const __u8 *b = (const __u8 *)&word_be;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		h ^= b[i];
		h *= HALB_FNV_PRIME;
	}
	return h;
}

static __always_inline __u64 halb_fmix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* ::ffff:a.b.c.d */
static __always_inline int halb_is_v4_mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

/* The flow hash of the client in `key` (only its source address and, with
 * `with_port`, its source port are hashed). */
static __always_inline __u64 halb_flow_hash(const struct halb_flow_key *key,
					    int with_port)
{
	const __u32 *src = (const __u32 *)key->src;
	__u64 h = HALB_FNV_OFFSET_BASIS ^ HALB_SEED_FLOW;
	if (key->family == HALB_FAMILY_V4) {
		h = halb_fnv_word(h, src[0]);
	} else if (halb_is_v4_mapped(src)) {
		h = halb_fnv_word(h, src[3]);
	} else {
		h = halb_fnv_word(h, src[0]);
		h = halb_fnv_word(h, src[1]);
		h = halb_fnv_word(h, src[2]);
		h = halb_fnv_word(h, src[3]);
	}
	if (with_port) {
		const __u8 *p = (const __u8 *)&key->sport;
		h ^= p[0];
		h *= HALB_FNV_PRIME;
		h ^= p[1];
		h *= HALB_FNV_PRIME;
	}
	return halb_fmix64(h);
}

#endif
