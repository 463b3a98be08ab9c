/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * Forwarding: IPIP / IP6IP6 (and 4in6, 6in4) encapsulation towards a
 * backend, layer-2 DSR (destination MAC rewrite), and ICMP "too big"
 * replies built in place when the encapsulated packet would not fit.
 *
 * Outer sources are chosen per flow so that a backend's RSS spreads flows:
 *   IPv4: the configured /16 prefix, low 16 bits = low 16 bits of the hash
 *   IPv6: the configured /64 prefix, low 64 bits = the hash (big-endian);
 *         the flow label is the low 20 bits of the hash
 */
#ifndef HALB_ENCAP_H
#define HALB_ENCAP_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "halb_consts.h"
#include "halb_structs.h"
#include "halb_maps.h"
#include "halb_parse.h"

#ifndef IPPROTO_IPIP
#define IPPROTO_IPIP 4
#endif

/* RFC 792 header of a "destination unreachable" message (linux/icmp.h
 * pulls in libc headers that do not exist for the BPF target). */
struct halb_icmphdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u16 unused;
	__u16 mtu;  /* next-hop MTU, RFC 1191 */
};

#define HALB_ICMP_DEST_UNREACH 3
#define HALB_ICMP_FRAG_NEEDED 4

static __always_inline __u16 halb_csum_fold(__u64 sum)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
	}
	return (__u16)~sum;
}

/* Checksum of a 20-byte IPv4 header (check field must be zero). */
static __always_inline __u16 halb_ipv4_csum(struct iphdr *ip)
{
	__u64 sum = 0;
	__u16 *p = (__u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += p[i];
	return halb_csum_fold(sum);
}

static __always_inline void halb_set_eth(struct ethhdr *eth, const __u8 *dmac,
					 const __u8 *smac, __u16 proto_host)
{
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(proto_host);
}

/* Prepend an outer IPv4 header. Returns 0 or -1 (packet untouched on -1
 * only if the head adjustment itself failed). The header checksum is
 * summed from the values written rather than read back from the packet. */
static __always_inline int halb_encap_v4(struct xdp_md *ctx,
					 const struct halb_packet *pkt,
					 const struct halb_backend *be,
					 const struct halb_config *cfg, __u64 hash)
{
	__u32 saddr = cfg->encap_src_v4 | bpf_htonl((__u32)(hash & 0xffff));
	__u32 daddr;
	__builtin_memcpy(&daddr, be->addr, 4);
	__u8 inner = pkt->key.family == HALB_FAMILY_V4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	/* The first, second, fourth and fifth 16-bit words of the header as
	 * they lie in memory: version/IHL and TOS, total length, flags and
	 * fragment offset, TTL and protocol. The identification is zero. */
	__u16 w_ver_tos = bpf_htons((__u16)(0x4500 | pkt->tos));
	__u16 w_len = bpf_htons((__u16)(pkt->l3_len + sizeof(struct iphdr)));
	__u16 w_frag = bpf_htons(HALB_IP_DF);
	__u16 w_ttl_proto = bpf_htons((__u16)((HALB_ENCAP_TTL << 8) | inner));
	__u64 sum = (__u64)w_ver_tos + w_len + w_frag + w_ttl_proto + (saddr & 0xffff) +
		    (saddr >> 16) + (daddr & 0xffff) + (daddr >> 16);

	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct iphdr)))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	if ((void *)(ip + 1) > data_end)
		return -1;
	halb_set_eth(eth, be->dmac, be->smac, ETH_P_IP);
	__u16 *w = (__u16 *)ip;
	w[0] = w_ver_tos;
	w[1] = w_len;
	w[2] = 0;
	w[3] = w_frag;
	w[4] = w_ttl_proto;
	ip->check = halb_csum_fold(sum);
	ip->saddr = saddr;
	ip->daddr = daddr;
	return 0;
}

/* Prepend an outer IPv6 header. */
static __always_inline int halb_encap_v6(struct xdp_md *ctx,
					 const struct halb_packet *pkt,
					 const struct halb_backend *be,
					 const struct halb_config *cfg, __u64 hash)
{
	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct ipv6hdr)))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
	if ((void *)(ip6 + 1) > data_end)
		return -1;
	halb_set_eth(eth, be->dmac, be->smac, ETH_P_IPV6);
	__u32 label = (__u32)hash & 0xfffff;
	ip6->version = 6;
	ip6->priority = pkt->tos >> 4;
	ip6->flow_lbl[0] = ((pkt->tos & 0xf) << 4) | (label >> 16);
	ip6->flow_lbl[1] = (label >> 8) & 0xff;
	ip6->flow_lbl[2] = label & 0xff;
	ip6->payload_len = bpf_htons(pkt->l3_len);
	ip6->nexthdr = pkt->key.family == HALB_FAMILY_V4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	ip6->hop_limit = HALB_ENCAP_TTL;
	__builtin_memcpy(&ip6->saddr, cfg->encap_src_v6, 8);
	__u32 hi = bpf_htonl((__u32)(hash >> 32));
	__u32 lo = bpf_htonl((__u32)hash);
	__builtin_memcpy((__u8 *)&ip6->saddr + 8, &hi, 4);
	__builtin_memcpy((__u8 *)&ip6->saddr + 12, &lo, 4);
	__builtin_memcpy(&ip6->daddr, be->addr, 16);
	return 0;
}

/* Layer-2 DSR: the IP packet is left as it is. */
static __always_inline int halb_l2_rewrite(struct xdp_md *ctx,
					   const struct halb_backend *be)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, be->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
	return 0;
}

#define HALB_ICMP4_QUOTE (sizeof(struct iphdr) + HALB_ICMP_QUOTE_L4)
#define HALB_ICMP4_LEN \
	(sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct halb_icmphdr) + HALB_ICMP4_QUOTE)

/* Turn an IPv4 packet that is too big into an ICMP "fragmentation needed"
 * (type 3 code 4, RFC 1191) back to its sender, from the VIP, quoting the
 * original IP header and the first HALB_ICMP_QUOTE_L4 bytes after it.
 * Returns 0 when the reply is ready for XDP_TX. */
static __always_inline int halb_icmp4_too_big(struct xdp_md *ctx, __u32 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	if ((void *)ip + HALB_ICMP4_QUOTE > data_end)
		return -1;
	__u8 dmac[ETH_ALEN], smac[ETH_ALEN];
	__builtin_memcpy(dmac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(smac, eth->h_dest, ETH_ALEN);
	__u32 saddr = ip->daddr;
	__u32 daddr = ip->saddr;

	int grow = sizeof(struct iphdr) + sizeof(struct halb_icmphdr);
	if (bpf_xdp_adjust_head(ctx, 0 - grow))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	int shrink = (int)HALB_ICMP4_LEN - (int)(data_end - data);
	if (shrink < 0 && bpf_xdp_adjust_tail(ctx, shrink))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HALB_ICMP4_LEN > data_end)
		return -1;

	eth = data;
	halb_set_eth(eth, dmac, smac, ETH_P_IP);
	ip = data + sizeof(struct ethhdr);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0xc0; /* internetwork control, as Linux sends ICMP errors */
	ip->tot_len = bpf_htons(sizeof(struct iphdr) + sizeof(struct halb_icmphdr) + HALB_ICMP4_QUOTE);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = HALB_ICMP_TTL;
	ip->protocol = IPPROTO_ICMP;
	ip->check = 0;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->check = halb_ipv4_csum(ip);

	struct halb_icmphdr *icmp = (void *)(ip + 1);
	icmp->type = HALB_ICMP_DEST_UNREACH;
	icmp->code = HALB_ICMP_FRAG_NEEDED;
	icmp->checksum = 0;
	icmp->unused = 0;
	icmp->mtu = bpf_htons((__u16)mtu);
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)icmp,
				  sizeof(struct halb_icmphdr) + HALB_ICMP4_QUOTE, 0);
	if (sum < 0)
		return -1;
	icmp->checksum = halb_csum_fold((__u64)sum);
	return 0;
}

#define HALB_ICMP6_QUOTE (sizeof(struct ipv6hdr) + HALB_ICMP_QUOTE_L4)
#define HALB_ICMP6_LEN \
	(sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + 8 + HALB_ICMP6_QUOTE)

struct halb_icmp6_pseudo {
	__u8 src[16];
	__u8 dst[16];
	__u32 len;   /* network order */
	__u8 zero[3];
	__u8 nexthdr;
};

/* ICMPv6 "packet too big" (RFC 4443 section 3.2), from the VIP. */
static __always_inline int halb_icmp6_too_big(struct xdp_md *ctx, __u32 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
	if ((void *)ip6 + HALB_ICMP6_QUOTE > data_end)
		return -1;
	__u8 dmac[ETH_ALEN], smac[ETH_ALEN];
	__builtin_memcpy(dmac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(smac, eth->h_dest, ETH_ALEN);
	struct halb_icmp6_pseudo ph = {};
	__builtin_memcpy(ph.src, &ip6->daddr, 16);
	__builtin_memcpy(ph.dst, &ip6->saddr, 16);
	ph.len = bpf_htonl(8 + HALB_ICMP6_QUOTE);
	ph.nexthdr = IPPROTO_ICMPV6;

	int grow = sizeof(struct ipv6hdr) + 8;
	if (bpf_xdp_adjust_head(ctx, 0 - grow))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	int shrink = (int)HALB_ICMP6_LEN - (int)(data_end - data);
	if (shrink < 0 && bpf_xdp_adjust_tail(ctx, shrink))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + HALB_ICMP6_LEN > data_end)
		return -1;

	eth = data;
	halb_set_eth(eth, dmac, smac, ETH_P_IPV6);
	ip6 = data + sizeof(struct ethhdr);
	ip6->version = 6;
	ip6->priority = 0;
	ip6->flow_lbl[0] = 0;
	ip6->flow_lbl[1] = 0;
	ip6->flow_lbl[2] = 0;
	ip6->payload_len = bpf_htons(8 + HALB_ICMP6_QUOTE);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = HALB_ICMP_TTL;
	__builtin_memcpy(&ip6->saddr, ph.src, 16);
	__builtin_memcpy(&ip6->daddr, ph.dst, 16);

	struct icmp6hdr *icmp6 = (void *)(ip6 + 1);
	icmp6->icmp6_type = ICMPV6_PKT_TOOBIG;
	icmp6->icmp6_code = 0;
	icmp6->icmp6_cksum = 0;
	icmp6->icmp6_mtu = bpf_htonl(mtu);
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
	if (sum < 0)
		return -1;
	sum = bpf_csum_diff(0, 0, (__be32 *)icmp6, 8 + HALB_ICMP6_QUOTE, (__u32)sum);
	if (sum < 0)
		return -1;
	icmp6->icmp6_cksum = halb_csum_fold((__u64)sum);
	return 0;
}

#endif
