#!/usr/bin/env bash
# XDP benchmark: packets/s through halb's XDP balancer vs the user-space L4
# path vs a bare XDP_TX reflector, on one namespace topology, same CPU
# placement. Needs root, clang and libbpf-dev. The reflector and xdp cases
# are measured in ROUNDS alternating rounds (default 5) and summarised as
# medians (with min/max) of each case and of the per-round ratio; the
# user-space case runs once. Bounded: at most PACKETS frames or SECONDS
# seconds per case and round (defaults 20000000 and 3).
# Usage: bash benches/xdp/run.sh [--rounds N] [--packets N] [--seconds S] [--sender-cpu C] [--proxy-cpu C] [--cases reflector,xdp,userspace] [--prog-stats] [--prog-runs N]
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p ebpf --example xdp_bench
exec "$CARGO_TARGET_DIR/release/examples/xdp_bench" "$@"
