#!/usr/bin/env bash
# VRRP failover benchmark: halb against keepalived with the same settings,
# in the same run, in network namespaces made here (a client and two
# routers on one bridge; nothing leaves them).
#
# For each setting (VRRPv2 1 s adverts, VRRPv3 100 ms, VRRPv3 10 ms) and
# each implementation, RUNS times (RUNS_SLOW for the 1 s setting):
#   crash     the master (priority 150) is killed with SIGKILL and its cable
#             pulled at the same instant; a client probing the VIP every 1 ms
#             measures the outage until the backup (priority 100) answers;
#   failback  the old master is started again (its VIP removed, cable back)
#             and preempts; probes lost while the VIP moves back are counted;
#   upgrade   a new binary replaces the master's daemon: halb `run --upgrade`,
#             keepalived a restart (it has no binary upgrade); gap and
#             probes lost;
#   planned   SIGTERM of the master: the outage of a planned switchover.
# Prints per-run figures and a table of medians with the targets of issue 3.
#
# Usage: sudo benches/vrrp/run.sh     (env: RUNS=5 RUNS_SLOW=3 SETTINGS="v2-1s v3-100ms v3-10ms")
set -euo pipefail

RUNS=${RUNS:-5}
RUNS_SLOW=${RUNS_SLOW:-3}
SETTINGS=${SETTINGS:-"v2-1s v3-100ms v3-10ms"}
IMPLS=${IMPLS:-"halb keepalived"}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/halb-vrrp-bench.XXXXXX)
P="hbv$$-"
VIP=10.0.0.100
PORT=7007

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
command -v keepalived >/dev/null || { echo "keepalived is not installed" >&2; exit 1; }

echo "building halb (release) and the prober..." >&2
(cd "$ROOT" && CARGO_TARGET_DIR="$TGT" cargo build --release -q -p halb)
HALB="$TGT/release/halb"
rustc --edition 2021 -O -o "$WORK/prober" "$ROOT/benches/vrrp/prober.rs"

declare -A PID
cleanup() {
    for k in "${!PID[@]}"; do kill -9 -- "-${PID[$k]}" 2>/dev/null || true; done
    for ns in sw cl r1 r2; do ip netns del "$P$ns" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

nsx() { local ns=$1; shift; ip netns exec "$P$ns" "$@"; }

# --- the LAN -------------------------------------------------------------
for ns in sw cl r1 r2; do ip netns add "$P$ns"; ip -n "$P$ns" link set lo up; done
ip -n "${P}sw" link add br0 type bridge stp_state 0 mcast_snooping 0
ip -n "${P}sw" link set br0 up
i=0
for ns in cl r1 r2; do
    ip link add eth0 netns "$P$ns" type veth peer name "p-$ns" netns "${P}sw"
    ip -n "${P}sw" link set "p-$ns" master br0
    ip -n "${P}sw" link set "p-$ns" up
    ip -n "$P$ns" link set eth0 up
done
ip -n "${P}cl" addr add 10.0.0.10/24 dev eth0
ip -n "${P}r1" addr add 10.0.0.1/24 dev eth0
ip -n "${P}r2" addr add 10.0.0.2/24 dev eth0
for r in r1 r2; do
    setsid ip netns exec "$P$r" "$WORK/prober" respond "$r" "$PORT" &
    PID[resp-$r]=$!
done

# --- the routers ---------------------------------------------------------
# start ROUTER IMPL VERSION ADVERT_MS PRIORITY
start() {
    local r=$1 impl=$2 ver=$3 adv=$4 prio=$5 conf
    if [ "$impl" = halb ]; then
        conf="$WORK/$r.toml"
        cat >"$conf" <<EOT
[node]
name = "$r"
admin_socket = "$WORK/$r.sock"
log_level = "warn"
shutdown_timeout = "5s"

[[vrrp]]
name = "front"
interface = "eth0"
vrid = 51
priority = $prio
version = $ver
advert_interval = "${adv}ms"
virtual_ips = ["$VIP/24"]
garp = { repeat = 5, interval = "10ms" }
EOT
        setsid ip netns exec "$P$r" "$HALB" run -c "$conf" >>"$WORK/$r.log" 2>&1 &
    else
        conf="$WORK/$r.conf"
        local int
        int=$(awk "BEGIN { printf \"%g\", $adv / 1000 }")
        cat >"$conf" <<EOT
global_defs {
  router_id $r
  vrrp_version $ver
}
vrrp_instance front {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority $prio
  advert_int $int
  virtual_ipaddress {
    $VIP/24
  }
}
EOT
        rm -f "$WORK/$r.kpid" "$WORK/$r.vpid"
        setsid ip netns exec "$P$r" keepalived -n -l -D -P -f "$conf" \
            -p "$WORK/$r.kpid" -r "$WORK/$r.vpid" >>"$WORK/$r.log" 2>&1 &
    fi
    PID[$r]=$!
}

# stop ROUTER SIGNAL: signal the router's process group, wait for it (10 s at most).
stop() {
    local r=$1 sig=$2 pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    kill "-$sig" -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PID[$r]"
}

holds() { ip -n "$P$1" -o addr show dev eth0 | grep -q " $VIP/"; }

# wait_master R OTHER: R holds the VIP, OTHER does not, the client reaches R (30 s at most).
wait_master() {
    local r=$1 o=$2
    for _ in $(seq 1 600); do
        if holds "$r" && ! holds "$o"; then
            local got
            got=$(nsx cl "$WORK/prober" probe "$VIP" "$PORT" 30 1000 | sed -n 's/.*last=\([^ ]*\).*/\1/p')
            [ "$got" = "$r" ] && return 0
        fi
        sleep 0.05
    done
    echo "$r never became master; logs in $WORK" >&2
    tail -20 "$WORK/$r.log" >&2
    return 1
}

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

RESULTS="$WORK/results"
: >"$RESULTS"

# probe_start MS: the client probes the VIP every 1 ms for MS ms, in the
# background; the event to measure follows 0.3 s later.
probe_start() {
    nsx cl "$WORK/prober" probe "$VIP" "$PORT" "$1" 1000 >"$WORK/probe" &
    PP=$!
    sleep 0.3
}

# record KIND ROUTER: waits for the probe, logs it, warns unless ROUTER
# answered last, and adds the gap and the probes lost to the results
# (uses one_run's impl, ver and adv).
record() {
    local kind=$1 want=$2 out
    wait "$PP" || true
    out=$(cat "$WORK/probe")
    printf '%s v%s %sms %-8s %s\n' "$impl" "$ver" "$adv" "$kind" "$out" >&2
    [ "$(echo "$out" | field last)" = "$want" ] || echo "  WARNING: $want does not hold the VIP after $kind" >&2
    echo "$impl $ver $adv $kind $(echo "$out" | field max_gap_ms) $(echo "$out" | field lost)" >>"$RESULTS"
}

# one_run IMPL VERSION ADVERT_MS
one_run() {
    local impl=$1 ver=$2 adv=$3
    local budget=$((3 * adv + 1200))
    # r1 master, r2 backup.
    start r1 "$impl" "$ver" "$adv" 150
    wait_master r1 r2
    start r2 "$impl" "$ver" "$adv" 100
    sleep "$(awk "BEGIN { print 4 * $adv / 1000 + 0.2 }")"

    # crash: SIGKILL and cable pulled at once.
    probe_start "$((300 + budget))"
    kill -9 -- "-${PID[r1]}" 2>/dev/null || true
    ip -n "${P}sw" link set p-r1 down
    record crash r2
    wait "${PID[r1]}" 2>/dev/null || true
    unset "PID[r1]"

    # failback: the crashed node returns (VIP gone, cable back) and preempts.
    ip -n "${P}r1" addr del "$VIP/24" dev eth0 2>/dev/null || true
    ip -n "${P}sw" link set p-r1 up
    sleep 0.1
    probe_start "$((500 + budget + 500))"
    start r1 "$impl" "$ver" "$adv" 150
    record failback r1
    wait_master r1 r2

    # upgrade: a new binary replaces the master's daemon. halb: `halb run
    # --upgrade` (the new process continues as master); keepalived has no
    # binary upgrade: a restart (SIGTERM, start), which is a planned
    # switchover followed by a preempting failback.
    probe_start "$((300 + budget + 3000))"
    if [ "$impl" = halb ]; then
        local old=${PID[r1]}
        setsid ip netns exec "${P}r1" "$HALB" run --upgrade -c "$WORK/r1.toml" >>"$WORK/r1.log" 2>&1 &
        PID[r1]=$!
        for _ in $(seq 1 200); do kill -0 "$old" 2>/dev/null || break; sleep 0.05; done
        wait "$old" 2>/dev/null || true
    else
        stop r1 TERM
        start r1 "$impl" "$ver" "$adv" 150
    fi
    record upgrade r1
    wait_master r1 r2

    # planned: SIGTERM of the master.
    probe_start "$((300 + adv + 1000))"
    stop r1 TERM
    record planned r2

    stop r2 TERM
    ip -n "${P}r1" addr del "$VIP/24" dev eth0 2>/dev/null || true
    ip -n "${P}r2" addr del "$VIP/24" dev eth0 2>/dev/null || true
}

for setting in $SETTINGS; do
    case $setting in
        v2-1s) ver=2 adv=1000 runs=$RUNS_SLOW ;;
        v3-100ms) ver=3 adv=100 runs=$RUNS ;;
        v3-10ms) ver=3 adv=10 runs=$RUNS ;;
        *) echo "unknown setting $setting" >&2; exit 2 ;;
    esac
    for n in $(seq 1 "$runs"); do
        for impl in $IMPLS; do
            one_run "$impl" "$ver" "$adv"
        done
    done
done

# --- summary -------------------------------------------------------------
echo
echo "VRRP failover, client probing the VIP every 1 ms; medians over the runs (ms)"
printf "%-9s %-11s %6s %12s %14s %14s %14s %16s %14s %16s\n" setting impl runs "crash gap" "crash target" "planned gap" "planned target" "failback lost" "upgrade gap" "upgrade lost"
for setting in $SETTINGS; do
    case $setting in
        v2-1s) ver=2 adv=1000 ;;
        v3-100ms) ver=3 adv=100 ;;
        v3-10ms) ver=3 adv=10 ;;
    esac
    # 3 x advert + skew of the backup (priority 100) + 10 ms; 1 advert + 10 ms.
    crash_target=$(awk "BEGIN { printf \"%.1f\", 3 * $adv + (256 - 100) * $adv / 256 + 10 }")
    planned_target=$((adv + 10))
    for impl in $IMPLS; do
        sel() { awk -v i="$impl" -v v="$ver" -v a="$adv" -v k="$1" '$1 == i && $2 == v && $3 == a && $4 == k { print $'"$2"' }' "$RESULTS"; }
        n=$(sel crash 5 | wc -l)
        crash=$(sel crash 5 | median)
        planned=$(sel planned 5 | median)
        lost=$(sel failback 6 | awk '{ s += $1 } END { print s + 0 }')
        upgrade=$(sel upgrade 5 | median)
        upgrade_lost=$(sel upgrade 6 | awk '{ s += $1 } END { print s + 0 }')
        printf "%-9s %-11s %6s %12s %14s %14s %14s %16s %14s %16s\n" "$setting" "$impl" "$n" "$crash" "<= $crash_target" "$planned" "<= $planned_target" "$lost total" "$upgrade" "$upgrade_lost total"
    done
done
echo
echo "all runs (impl version advert_ms kind max_gap_ms lost):"
cat "$RESULTS"
