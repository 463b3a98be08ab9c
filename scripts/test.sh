#!/usr/bin/env bash
# The whole test suite, as the README says and CI runs it.
#
# Installs the Debian packages the tests need when they are missing (needs
# root; CI runs as root), then: rustfmt check, clippy with -D warnings, one
# build of every target, and every test of the workspace. Network tests run
# in namespaces they create and remove themselves; without root they print
# SKIP and return, and under CI=true a skip is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: program or file that proves the package is there.
need=(
  "clang:clang" "llvm-strip:llvm" "/usr/include/bpf/bpf_helpers.h:libbpf-dev"
  "ip:iproute2" "tcpdump:tcpdump" "keepalived:keepalived" "nginx:nginx-light"
  "haproxy:haproxy" "wrk:wrk" "/usr/sbin/fence_dummy:fence-agents"
  "arping:arping" "ping:iputils-ping" "ethtool:ethtool" "bpftool:bpftool"
)
missing=()
for entry in "${need[@]}"; do
  probe=${entry%%:*} pkg=${entry#*:}
  if [[ $probe == /* ]]; then [[ -e $probe ]] && continue
  else command -v "$probe" >/dev/null 2>&1 && continue
  fi
  missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then
    echo "test.sh: installing missing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi
# Packaged daemons must not run as services during the tests.
for svc in nginx haproxy keepalived; do
  pkill -x "$svc" 2>/dev/null || true
done

export CARGO_TERM_COLOR=never
failed=()
step() {
  printf '\n=== %s\n' "$*"
  if ! "$@"; then failed+=("$*"); fi
}

step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo build --workspace --all-targets
# Test binaries run one at a time (namespaced tests create many processes);
# each binary's own tests run in parallel threads. Bounded overall.
step timeout --signal=INT --kill-after=60 2400 \
  cargo test --workspace --no-fail-fast -- --test-threads="${HALB_TEST_THREADS:-2}"

if ((${#failed[@]})); then
  printf '\nFAILED steps:\n' >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
printf '\nall steps passed\n'
