/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * Decapsulation on a backend (katran's decap, for kernels without ipip /
 * ip6_tunnel): an IPIP, IP6IP6, 4in6 or 6in4 packet whose outer destination
 * is listed in halb_decap_addrs loses its outer header and goes up the
 * stack as the client's original packet (whose destination, the VIP, the
 * backend holds on lo). Everything else passes untouched. Outer fragments
 * are left to the stack.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "halb_consts.h"
#include "halb_structs.h"

#ifndef IPPROTO_IPIP
#define IPPROTO_IPIP 4
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct halb_decap_key);
	__type(value, __u32);
} halb_decap_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct halb_decap_stats);
} halb_decap_stats SEC(".maps");

static __always_inline int halb_strip(struct xdp_md *ctx, int outer_len, __u8 inner_proto)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	struct ethhdr saved = *eth;
	if (bpf_xdp_adjust_head(ctx, outer_len))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, saved.h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_source, saved.h_source, ETH_ALEN);
	eth->h_proto = inner_proto == IPPROTO_IPIP ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
	return 0;
}

SEC("xdp")
int halb_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct halb_decap_stats *st = bpf_map_lookup_elem(&halb_decap_stats, &zero);
	if (!st)
		return XDP_PASS;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		goto pass;
	struct halb_decap_key key = {};
	__u8 inner;
	int outer_len;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end || ip->ihl != 5)
			goto pass;
		if (ip->frag_off & bpf_htons(0x3fff))
			goto pass;
		if (ip->protocol != IPPROTO_IPIP && ip->protocol != IPPROTO_IPV6)
			goto pass;
		inner = ip->protocol;
		key.family = HALB_FAMILY_V4;
		__builtin_memcpy(key.addr, &ip->daddr, 4);
		outer_len = sizeof(struct iphdr);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			goto pass;
		if (ip6->nexthdr != IPPROTO_IPIP && ip6->nexthdr != IPPROTO_IPV6)
			goto pass;
		inner = ip6->nexthdr;
		key.family = HALB_FAMILY_V6;
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
		outer_len = sizeof(struct ipv6hdr);
	} else {
		goto pass;
	}
	if (!bpf_map_lookup_elem(&halb_decap_addrs, &key))
		goto pass;
	if (halb_strip(ctx, outer_len, inner))
		return XDP_DROP;
	st->decapsulated++;
	return XDP_PASS;
pass:
	st->passed++;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
