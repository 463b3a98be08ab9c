/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * halb's XDP L4 balancer (katran-style: the program only looks things up;
 * user space builds the Maglev tables and pushes them into maps).
 *
 * For each frame:
 *  1. Parse Ethernet / IPv4 / IPv6 / TCP / UDP. Non-IP, fragments, IPv4
 *     options, IPv6 extension headers and malformed headers go to the
 *     stack untouched (XDP_PASS), counted by reason.
 *  2. Look up (destination address, port, protocol) in halb_vips; no match
 *     = XDP_PASS untouched.
 *  3. Look up the 5-tuple in the LRU flow table (per-CPU LRU lists). A hit
 *     on a backend that is still active and of the same generation keeps
 *     its backend and the hash stored with the flow (drained servers are
 *     active but absent from the Maglev table, so they keep their flows
 *     and get no new ones). A miss hashes the client (halb_hash.h), takes
 *     Maglev slot hash % M of the VIP's current table and pins the flow
 *     with its hash.
 *  4. Forward to the backend's next hop, which user space resolved
 *     (route + neighbour) and stored with the backend: encapsulate (IPIP
 *     family) or rewrite the destination MAC (l2-dsr), then XDP_TX when
 *     the next hop is behind the receiving interface, else bpf_redirect.
 *     An encapsulated packet that would exceed the egress MTU is answered
 *     with ICMP "too big" instead.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "halb_consts.h"
#include "halb_structs.h"
#include "halb_maps.h"
#include "halb_parse.h"
#include "halb_hash.h"
#include "halb_encap.h"

static __always_inline int halb_out(struct xdp_md *ctx, __u32 ifindex,
				    struct halb_global_stats *gs)
{
	if (ifindex == ctx->ingress_ifindex) {
		gs->tx++;
		return XDP_TX;
	}
	gs->redirect++;
	return bpf_redirect(ifindex, 0);
}

SEC("xdp")
int halb_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct halb_global_stats *gs = bpf_map_lookup_elem(&halb_global_stats, &zero);
	struct halb_config *cfg = bpf_map_lookup_elem(&halb_config, &zero);
	if (!gs || !cfg)
		return XDP_PASS;

	struct halb_packet pkt = {};
	switch (halb_parse(data, data_end, &pkt)) {
	case HALB_PARSE_OK:
		break;
	case HALB_PARSE_NOT_IP:
		gs->pass_not_ip++;
		return XDP_PASS;
	case HALB_PARSE_NOT_L4:
		gs->pass_not_vip++;
		return XDP_PASS;
	case HALB_PARSE_FRAGMENT:
		gs->pass_fragment++;
		return XDP_PASS;
	case HALB_PARSE_OPTIONS:
		gs->pass_ip_options++;
		return XDP_PASS;
	default:
		gs->pass_malformed++;
		return XDP_PASS;
	}

	/* The flow key starts with the VIP key: one parse, two lookups. */
	struct halb_vip_meta *vip = bpf_map_lookup_elem(&halb_vips, &pkt.key);
	if (!vip) {
		gs->pass_not_vip++;
		return XDP_PASS;
	}
	__u32 vip_index = vip->index;
	__u32 vip_flags = vip->flags;
	struct halb_vip_stats *vs = bpf_map_lookup_elem(&halb_vip_stats, &vip_index);
	if (!vs)
		return XDP_PASS;
	__u64 frame_len = data_end - data;
	vs->packets++;
	vs->bytes += frame_len;

	/* Established flows reuse the hash computed when they were pinned
	 * (unless the VIP's hash key changed since); only new flows hash. */
	__u32 hash_flags = vip_flags & HALB_VIP_HASH_PORT;
	__u64 hash = 0;
	__u32 bidx = 0;
	struct halb_backend *be = 0;
	int hit = 0;
	struct halb_flow *flow = bpf_map_lookup_elem(&halb_flows, &pkt.key);
	if (flow) {
		bidx = flow->backend;
		__u32 generation = flow->generation;
		be = bpf_map_lookup_elem(&halb_backends, &bidx);
		if (be && (be->flags & HALB_BACKEND_ACTIVE) && be->generation == generation) {
			hit = 1;
			hash = flow->hash_flags == hash_flags ? flow->hash
							      : halb_flow_hash(&pkt.key, hash_flags);
		}
	}
	if (!hit) {
		vs->lru_misses++;
		hash = halb_flow_hash(&pkt.key, hash_flags);
		void *table = bpf_map_lookup_elem(&halb_maglev, &vip_index);
		if (!table)
			goto no_backend;
		__u32 *size = bpf_map_lookup_elem(table, &zero);
		if (!size || *size == 0)
			goto no_backend;
		__u32 slot = (__u32)(hash % *size) + 1;
		__u32 *chosen = bpf_map_lookup_elem(table, &slot);
		if (!chosen)
			goto no_backend;
		bidx = *chosen;
		be = bpf_map_lookup_elem(&halb_backends, &bidx);
		if (!be || !(be->flags & HALB_BACKEND_ACTIVE))
			goto no_backend;
		struct halb_flow nf = {
			.backend = bidx,
			.generation = be->generation,
			.hash = hash,
			.hash_flags = hash_flags,
		};
		bpf_map_update_elem(&halb_flows, &pkt.key, &nf, BPF_ANY);
	}
	if (!be)
		goto no_backend;

	struct halb_backend_stats *bs = bpf_map_lookup_elem(&halb_backend_stats, &bidx);
	if (bs) {
		bs->packets++;
		bs->bytes += frame_len;
	}
	if (!hit) {
		int is_new = pkt.key.proto == IPPROTO_UDP ||
			     (pkt.tcp_flags & (HALB_TCP_SYN | HALB_TCP_ACK)) == HALB_TCP_SYN;
		if (is_new)
			vs->new_flows++;
		if (bs) {
			bs->lru_misses++;
			if (is_new)
				bs->new_flows++;
		}
	}

	/* The backend is read in place: the map value stays valid across the
	 * head adjustment, and user space rewrites whole entries. */
	if (!(be->flags & HALB_BACKEND_RESOLVED)) {
		vs->dropped++;
		gs->drop_no_route++;
		return XDP_DROP;
	}

	if (vip_flags & HALB_VIP_L2DSR) {
		if (!(be->flags & HALB_BACKEND_ONLINK)) {
			vs->dropped++;
			gs->drop_not_onlink++;
			return XDP_DROP;
		}
		if (halb_l2_rewrite(ctx, be)) {
			gs->drop_error++;
			return XDP_DROP;
		}
		return halb_out(ctx, be->ifindex, gs);
	}

	__u32 overhead = be->family == HALB_FAMILY_V4 ? sizeof(struct iphdr)
							 : sizeof(struct ipv6hdr);
	if ((__u32)pkt.l3_len + overhead > be->mtu) {
		__u32 inner_mtu = be->mtu > overhead ? be->mtu - overhead : 0;
		int err = pkt.key.family == HALB_FAMILY_V4 ? halb_icmp4_too_big(ctx, inner_mtu)
						       : halb_icmp6_too_big(ctx, inner_mtu);
		if (err) {
			gs->drop_error++;
			return XDP_DROP;
		}
		vs->icmp_too_big++;
		gs->icmp_too_big++;
		gs->tx++;
		return XDP_TX;
	}

	int err = be->family == HALB_FAMILY_V4
			  ? halb_encap_v4(ctx, &pkt, be, cfg, hash)
			  : halb_encap_v6(ctx, &pkt, be, cfg, hash);
	if (err) {
		gs->drop_error++;
		return XDP_DROP;
	}
	return halb_out(ctx, be->ifindex, gs);

no_backend:
	vs->dropped++;
	gs->drop_no_backend++;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
