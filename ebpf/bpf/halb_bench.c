/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * Programs for the XDP benchmark (benches/xdp/): a sender driven by
 * BPF_PROG_TEST_RUN in live-frames mode, a bare XDP_TX reflector (the
 * machine's ceiling), a counting sink and a pass-through.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "halb_structs.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct halb_bench_stats);
} halb_bench_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct halb_bench_frame);
} halb_bench_frame SEC(".maps");

/* Live-frames sender: writes the template frame and transmits it. In
 * live-frames mode the kernel recycles pages without restoring their
 * bytes, and a receiver that rewrites frames in place (the balancer
 * encapsulates) would otherwise corrupt what is sent next. */
SEC("xdp")
int halb_bench_send(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct halb_bench_frame *tmpl = bpf_map_lookup_elem(&halb_bench_frame, &zero);
	if (!tmpl || data + HALB_BENCH_FRAME_LEN > data_end)
		return XDP_DROP;
	__builtin_memcpy(data, tmpl->bytes, HALB_BENCH_FRAME_LEN);
	return XDP_TX;
}

/* Bare reflector: swap the MAC addresses and send the frame back. */
SEC("xdp")
int halb_bench_reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__u8 tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

/* Pass: lets a veth peer receive XDP_TX / redirected frames in native
 * mode (veth needs an XDP program or GRO on the receiving end). */
SEC("xdp")
int halb_bench_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Sink: count and drop. */
SEC("xdp")
int halb_bench_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct halb_bench_stats *st = bpf_map_lookup_elem(&halb_bench_stats, &zero);
	if (st) {
		st->packets++;
		st->bytes += (__u64)(ctx->data_end - ctx->data);
	}
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
