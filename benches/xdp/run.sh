#!/usr/bin/env bash
# XDP benchmark: packets/s through halb's XDP balancer vs the user-space L4
# path vs a bare XDP_TX reflector, on one namespace topology, same CPU
# placement. Needs root, clang and libbpf-dev. Bounded: at most PACKETS
# frames or SECONDS seconds per case (defaults 20000000 and 5).
# Usage: bash benches/xdp/run.sh [--packets N] [--seconds S] [--sender-cpu C] [--proxy-cpu C] [--cases reflector,xdp,userspace]
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p ebpf --example xdp_bench
exec "$CARGO_TARGET_DIR/release/examples/xdp_bench" "$@"
