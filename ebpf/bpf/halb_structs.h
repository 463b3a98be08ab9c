/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * Map keys and values: the one definition of every layout shared with user
 * space. ebpf/src/abi.rs holds #[repr(C)] mirrors; the test
 * `abi_layout_matches_object_btf` compares sizes and field offsets with the
 * BTF of the compiled object. Multi-byte address and port fields are in
 * network byte order; everything else is host order.
 */
#ifndef HALB_STRUCTS_H
#define HALB_STRUCTS_H

#include <linux/types.h>

/* halb_vips key: one (address, port, protocol) a frontend serves. IPv4
 * addresses use addr[0..4], the rest is zero. */
struct halb_vip_key {
	__u8 addr[16];
	__u16 port;   /* network order */
	__u8 proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;  /* HALB_FAMILY_V4 / HALB_FAMILY_V6 */
};

/* halb_vips value. */
struct halb_vip_meta {
	__u32 index;  /* into halb_maglev and halb_vip_stats */
	__u32 flags;  /* HALB_VIP_* */
};

/* halb_backends value, indexed by backend index. User space resolves the
 * next hop (route and neighbour, over rtnetlink) and keeps dmac, smac,
 * ifindex and mtu current; the program only reads them. */
struct halb_backend {
	__u8 addr[16];     /* IPv4 in addr[0..4] */
	__u8 dmac[6];      /* next hop's MAC: the backend, or its gateway */
	__u8 smac[6];      /* MAC of the egress interface */
	__u32 ifindex;     /* egress interface */
	__u32 mtu;         /* egress MTU */
	__u32 generation;  /* changes whenever the index is given to another server */
	__u8 family;       /* HALB_FAMILY_V4 / HALB_FAMILY_V6 */
	__u8 flags;        /* HALB_BACKEND_* */
	__u16 reserved;
};

/* halb_flows key: the 5-tuple of a client flow. Its first 20 bytes are a
 * struct halb_vip_key (VIP address, port, protocol, family): the program
 * parses a frame into this key once and looks the VIP up with its prefix
 * (the _Static_asserts below pin that). */
struct halb_flow_key {
	__u8 dst[16];   /* VIP */
	__u16 dport;    /* network order */
	__u8 proto;
	__u8 family;
	__u8 src[16];   /* client */
	__u16 sport;    /* network order */
	__u16 reserved;
};

_Static_assert(__builtin_offsetof(struct halb_flow_key, dst) ==
		       __builtin_offsetof(struct halb_vip_key, addr) &&
	       __builtin_offsetof(struct halb_flow_key, dport) ==
		       __builtin_offsetof(struct halb_vip_key, port) &&
	       __builtin_offsetof(struct halb_flow_key, proto) ==
		       __builtin_offsetof(struct halb_vip_key, proto) &&
	       __builtin_offsetof(struct halb_flow_key, family) ==
		       __builtin_offsetof(struct halb_vip_key, family) &&
	       sizeof(struct halb_vip_key) == 20,
	       "struct halb_vip_key must be a prefix of struct halb_flow_key");

/* halb_flows value: the backend a flow is pinned to, and the flow hash
 * computed when it was pinned, so established flows do not hash again
 * (the hash also gives the outer source of encapsulated packets). */
struct halb_flow {
	__u32 backend;
	__u32 generation;  /* halb_backend.generation when the flow was pinned */
	__u64 hash;        /* halb_flow_hash() of the client */
	__u32 hash_flags;  /* HALB_VIP_HASH_PORT if `hash` covers the source port */
	__u32 reserved;
};

/* halb_config value (single entry). */
struct halb_config {
	__u8 encap_src_v6[8];  /* /64 prefix of outer IPv6 sources */
	__u32 encap_src_v4;    /* /16 prefix of outer IPv4 sources, network order */
	__u32 reserved;
};

/* halb_vip_stats value (per CPU), indexed by VIP index. */
struct halb_vip_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;     /* TCP SYN or UDP packets that started a flow */
	__u64 lru_misses;    /* packets not found in the flow table */
	__u64 icmp_too_big;  /* ICMP "too big" replies sent */
	__u64 dropped;       /* no live backend, no route or no neighbour */
};

/* halb_backend_stats value (per CPU), indexed by backend index. */
struct halb_backend_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 lru_misses;
};

/* halb_global_stats value (per CPU, single entry): what happened to
 * packets that were not forwarded. */
struct halb_global_stats {
	__u64 pass_not_ip;      /* not IPv4/IPv6 (ARP, VLAN, ...) */
	__u64 pass_not_vip;     /* IP but no VIP matches (incl. non TCP/UDP) */
	__u64 pass_fragment;    /* IPv4 fragment or IPv6 fragment header */
	__u64 pass_ip_options;  /* IPv4 options or IPv6 extension headers */
	__u64 pass_malformed;   /* truncated or inconsistent headers */
	__u64 drop_no_backend;  /* VIP without a live backend */
	__u64 drop_no_route;    /* next hop of the backend not resolved */
	__u64 drop_not_onlink;  /* l2-dsr backend behind a gateway */
	__u64 drop_error;       /* head/tail adjustment failed */
	__u64 tx;               /* XDP_TX */
	__u64 redirect;         /* bpf_redirect to another interface */
	__u64 icmp_too_big;     /* ICMP fragmentation needed / packet too big */
};

/* halb_decap_addrs key (decapsulation program on backends). */
struct halb_decap_key {
	__u8 addr[16];
	__u8 family;
	__u8 reserved[3];
};

/* halb_decap_stats value (per CPU, single entry). */
struct halb_decap_stats {
	__u64 decapsulated;
	__u64 passed;
};

/* halb_bench_stats value (per CPU, single entry) of the benchmark sink. */
struct halb_bench_stats {
	__u64 packets;
	__u64 bytes;
};

/* halb_bench_frame value (single entry): the frame the live-frames sender
 * writes into every packet it transmits. */
#define HALB_BENCH_FRAME_LEN 64
struct halb_bench_frame {
	__u8 bytes[HALB_BENCH_FRAME_LEN];
};

#endif
