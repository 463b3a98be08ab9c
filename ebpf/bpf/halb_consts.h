/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * Constants shared by halb's XDP programs. The Rust loader mirrors every
 * value it needs in ebpf/src/abi.rs; the layout test checks the structs, and
 * abi.rs unit tests pin these numbers.
 */
#ifndef HALB_CONSTS_H
#define HALB_CONSTS_H

/* Capacity of the VIP table and of the per-VIP maps (index space). */
#define HALB_MAX_VIPS 256
/* Capacity of the backend table (index space shared by all VIPs). */
#define HALB_MAX_BACKENDS 4096
/* Flow table entries unless the loader overrides max_entries. */
#define HALB_DEFAULT_FLOWS 65536
/* Maglev slots of the inner-map template (inner maps may differ in size:
 * the template carries BPF_F_INNER_MAP). */
#define HALB_MAGLEV_TEMPLATE_SLOTS 65538

/* Address families as stored in keys (not AF_*). */
#define HALB_FAMILY_V4 4
#define HALB_FAMILY_V6 6

/* struct halb_vip_meta.flags */
#define HALB_VIP_IPIP 0x1      /* encapsulate: IPIP / IP6IP6 / 4in6 / 6in4 */
#define HALB_VIP_L2DSR 0x2     /* rewrite the destination MAC only */
#define HALB_VIP_HASH_PORT 0x4 /* the flow hash covers the source port */

/* struct halb_backend.flags */
#define HALB_BACKEND_ACTIVE 0x1   /* flows pinned to this backend may continue */
#define HALB_BACKEND_RESOLVED 0x2 /* dmac / smac / ifindex / mtu are valid */
#define HALB_BACKEND_ONLINK 0x4   /* reachable without a gateway (l2-dsr) */

/* Outer header fields of encapsulated packets. */
#define HALB_ENCAP_TTL 64
#define HALB_ICMP_TTL 64

/* Bytes of the offending packet quoted in ICMP "too big" replies after
 * its IP header (enough for ports and the TCP sequence number). */
#define HALB_ICMP_QUOTE_L4 64

/* Flow hash: seeded FNV-1a 64 with MurmurHash3's fmix64 finaliser, the
 * same function as dataplane::maglev::hash_flow (see halb_hash.h). */
#define HALB_FNV_OFFSET_BASIS 0xcbf29ce484222325ULL
#define HALB_FNV_PRIME 0x00000100000001b3ULL
#define HALB_SEED_FLOW 0x68616c62666c6f77ULL /* ASCII "halbflow" */

#endif
