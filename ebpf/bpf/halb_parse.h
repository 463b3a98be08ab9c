/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * Packet parsing: Ethernet, IPv4 / IPv6, TCP / UDP ports. Only what the
 * balancer forwards is parsed; everything else is classified so the caller
 * can count it and hand it to the stack untouched.
 */
#ifndef HALB_PARSE_H
#define HALB_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "halb_consts.h"
#include "halb_structs.h"

#define HALB_IP_MF 0x2000
#define HALB_IP_OFFSET 0x1fff
#define HALB_IP_DF 0x4000

/* The parsed headers of one frame. The 5-tuple is parsed straight into
 * the flow-table key (whose prefix is the VIP key). Addresses and ports are
 * in network order; an IPv4 address occupies bytes 0..4 of its field and
 * the rest stays zero, so the caller must zero-initialise the struct. */
struct halb_packet {
	struct halb_flow_key key;
	__u16 l3_len;  /* IP total length (header + payload), host order */
	__u8 tos;      /* IPv4 TOS or IPv6 traffic class */
	__u8 tcp_flags;
};

enum halb_parse_result {
	HALB_PARSE_OK = 0,
	HALB_PARSE_NOT_IP,
	HALB_PARSE_NOT_L4,     /* IP, but neither TCP nor UDP */
	HALB_PARSE_FRAGMENT,
	HALB_PARSE_OPTIONS,
	HALB_PARSE_MALFORMED,
};

#define HALB_TCP_FIN 0x01
#define HALB_TCP_SYN 0x02
#define HALB_TCP_RST 0x04
#define HALB_TCP_ACK 0x10

static __always_inline int halb_parse_l4(void *l4, void *data_end,
					 struct halb_packet *pkt)
{
	if (pkt->key.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			return HALB_PARSE_MALFORMED;
		pkt->key.sport = tcp->source;
		pkt->key.dport = tcp->dest;
		/* Byte 13 of the TCP header holds the flags. */
		pkt->tcp_flags = ((__u8 *)tcp)[13];
		return HALB_PARSE_OK;
	}
	struct udphdr *udp = l4;
	if ((void *)(udp + 1) > data_end)
		return HALB_PARSE_MALFORMED;
	pkt->key.sport = udp->source;
	pkt->key.dport = udp->dest;
	return HALB_PARSE_OK;
}

static __always_inline int halb_parse_v4(void *data, void *data_end,
					 struct halb_packet *pkt)
{
	struct iphdr *ip = data + sizeof(struct ethhdr);
	if ((void *)(ip + 1) > data_end)
		return HALB_PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return HALB_PARSE_MALFORMED;
	if (ip->ihl != 5)
		return HALB_PARSE_OPTIONS;
	if (ip->frag_off & bpf_htons(HALB_IP_MF | HALB_IP_OFFSET))
		return HALB_PARSE_FRAGMENT;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return HALB_PARSE_NOT_L4;
	__u16 len = bpf_ntohs(ip->tot_len);
	if (len < sizeof(struct iphdr) ||
	    (void *)ip + len > data_end)
		return HALB_PARSE_MALFORMED;
	pkt->key.family = HALB_FAMILY_V4;
	pkt->key.proto = ip->protocol;
	pkt->tos = ip->tos;
	pkt->l3_len = len;
	*(__u32 *)pkt->key.src = ip->saddr;
	*(__u32 *)pkt->key.dst = ip->daddr;
	return halb_parse_l4(ip + 1, data_end, pkt);
}

static __always_inline int halb_parse_v6(void *data, void *data_end,
					 struct halb_packet *pkt)
{
	struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
	if ((void *)(ip6 + 1) > data_end)
		return HALB_PARSE_MALFORMED;
	if (ip6->version != 6)
		return HALB_PARSE_MALFORMED;
	switch (ip6->nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		break;
	case 44: /* fragment header */
		return HALB_PARSE_FRAGMENT;
	case 0:   /* hop-by-hop options */
	case 43:  /* routing */
	case 60:  /* destination options */
	case 51:  /* authentication header */
	case 135: /* mobility */
	case 139: /* host identity protocol */
	case 140: /* shim6 */
		return HALB_PARSE_OPTIONS;
	default:
		return HALB_PARSE_NOT_L4;
	}
	__u32 len = (__u32)bpf_ntohs(ip6->payload_len) + sizeof(struct ipv6hdr);
	if ((void *)ip6 + len > data_end || len > 0xffff)
		return HALB_PARSE_MALFORMED;
	pkt->key.family = HALB_FAMILY_V6;
	pkt->key.proto = ip6->nexthdr;
	pkt->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	pkt->l3_len = (__u16)len;
	__builtin_memcpy(pkt->key.src, &ip6->saddr, 16);
	__builtin_memcpy(pkt->key.dst, &ip6->daddr, 16);
	return halb_parse_l4(ip6 + 1, data_end, pkt);
}

static __always_inline int halb_parse(void *data, void *data_end,
				      struct halb_packet *pkt)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return HALB_PARSE_MALFORMED;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return halb_parse_v4(data, data_end, pkt);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return halb_parse_v6(data, data_end, pkt);
	return HALB_PARSE_NOT_IP;
}

#endif
