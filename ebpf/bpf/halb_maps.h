/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * Maps of the balancer program. User space (ebpf/src/balancer.rs) owns
 * every write except halb_flows (the program pins new flows itself) and
 * the per-CPU counters.
 */
#ifndef HALB_MAPS_H
#define HALB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "halb_consts.h"
#include "halb_structs.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HALB_MAX_VIPS);
	__type(key, struct halb_vip_key);
	__type(value, struct halb_vip_meta);
} halb_vips SEC(".maps");

/* One Maglev table per VIP index, swapped whole: slot 0 holds the table
 * size M, slots 1..=M backend indices. */
struct halb_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HALB_MAGLEV_TEMPLATE_SLOTS);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, HALB_MAX_VIPS);
	__type(key, __u32);
	__array(values, struct halb_maglev_inner);
} halb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HALB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct halb_backend);
} halb_backends SEC(".maps");

/* Flow table. BPF_F_NO_COMMON_LRU: every CPU keeps its own LRU and free
 * lists (an equal share of max_entries), so pinning new flows on one CPU
 * takes no lock shared with the others; lookups see every CPU's flows. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HALB_DEFAULT_FLOWS);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct halb_flow_key);
	__type(value, struct halb_flow);
} halb_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct halb_config);
} halb_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HALB_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct halb_vip_stats);
} halb_vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HALB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct halb_backend_stats);
} halb_backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct halb_global_stats);
} halb_global_stats SEC(".maps");

#endif
