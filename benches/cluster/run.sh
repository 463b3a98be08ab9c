#!/usr/bin/env bash
# Cluster failover benchmark, in network namespaces made here (a client and
# three halb nodes on a LAN bridge, the nodes' heartbeat ring on a second
# bridge; nothing leaves them). A client probes the VIP every 1 ms with the
# VRRP benchmark's prober (benches/vrrp/prober.rs) and reports the longest
# run of lost probes.
#
# Cases (each RUNS times, RUNS_SLOW for the 1 s heartbeat):
#   vrrp10      baseline: plain VRRPv3, 10 ms adverts, no [cluster]; the
#               master is killed (SIGKILL) and its cables pulled at once;
#   fast1ms     the same crash under cluster control: heartbeats every 1 ms,
#               miss_count $MISS, no fence device, VRRPv3 10 ms adverts: the
#               backup learns of the death from membership and takes over
#               without waiting for Master_Down_Interval;
#   part100ms   the master's links are cut (LAN and ring; the process keeps
#   part1s      running, as in a partition): the majority fences it with
#               fence_dummy and takes over; heartbeats every 100 ms / 1 s,
#               miss_count 3, VRRPv3 100 ms adverts.
# The figure is the prober's max_gap_ms: from the last answer of the old
# master to the first answer of the new one, minus one probe interval.
#
# Usage: sudo benches/cluster/run.sh   (env: RUNS=5 RUNS_SLOW=3 MISS=5 CASES="vrrp10 fast1ms part100ms part1s",
#        LOG=warn (halb log level), KEEP=1 keeps configs and logs, HALB_BIN=path skips the build)
set -euo pipefail

RUNS=${RUNS:-5}
RUNS_SLOW=${RUNS_SLOW:-3}
MISS=${MISS:-5}
LOG=${LOG:-warn}
KEEP=${KEEP:-0}
CASES=${CASES:-"vrrp10 fast1ms part100ms part1s"}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TGT=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/halb-cluster-bench.XXXXXX)
P="hbc$$-"
VIP=10.0.0.100
PORT=7007
NODES="n1 n2 n3"

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
[ -x /usr/sbin/fence_dummy ] || { echo "fence_dummy (fence-agents) is not installed" >&2; exit 1; }

if [ -n "${HALB_BIN:-}" ]; then
    HALB=$HALB_BIN
else
    echo "building halb (release)..." >&2
    (cd "$ROOT" && CARGO_TARGET_DIR="$TGT" cargo build --release -q -p halb)
    HALB="$TGT/release/halb"
fi
rustc --edition 2021 -O -o "$WORK/prober" "$ROOT/benches/vrrp/prober.rs"

declare -A PID
cleanup() {
    for k in "${!PID[@]}"; do kill -9 -- "-${PID[$k]}" 2>/dev/null || true; done
    for ns in sw cl $NODES; do ip netns del "$P$ns" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then echo "files kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

nsx() { local ns=$1; shift; ip netns exec "$P$ns" "$@"; }

# --- the LAN and the ring --------------------------------------------------
for ns in sw cl $NODES; do ip netns add "$P$ns"; ip -n "$P$ns" link set lo up; done
# Both bridges live in namespace sw (br0: the LAN, br1: the ring), so that
# one `ip -batch` pulls all of a node's cables within microseconds.
for b in br0 br1; do
    ip -n "${P}sw" link add "$b" type bridge stp_state 0 mcast_snooping 0
    ip -n "${P}sw" link set "$b" up
done
plug() { # NS IFNAME BRIDGE PORTNAME
    ip link add "$2" netns "$P$1" type veth peer name "$4" netns "${P}sw"
    ip -n "${P}sw" link set "$4" master "$3"
    ip -n "${P}sw" link set "$4" up
    ip -n "$P$1" link set "$2" up
}
# cables NODE up|down: the node's LAN and ring ports, LAN first.
cables() {
    printf 'link set p-%s %s\nlink set r-%s %s\n' "$1" "$2" "$1" "$2" | ip -n "${P}sw" -batch -
}
plug cl eth0 br0 p-cl
ip -n "${P}cl" addr add 10.0.0.10/24 dev eth0
i=0
for n in $NODES; do
    i=$((i + 1))
    plug "$n" eth0 br0 "p-$n"
    plug "$n" eth1 br1 "r-$n"
    ip -n "$P$n" addr add "10.0.0.$i/24" dev eth0
    ip -n "$P$n" addr add "10.1.0.$i/24" dev eth1
    setsid ip netns exec "$P$n" "$WORK/prober" respond "$n" "$PORT" &
    PID[resp-$n]=$!
done
head -c 48 /dev/urandom >"$WORK/cluster.key"
chmod 600 "$WORK/cluster.key"

# config NODE PRIORITY ADVERT CLUSTER(0|1) HEARTBEAT MISS FENCE(0|1)
config() {
    local n=$1 prio=$2 adv=$3 cl=$4 hb=$5 miss=$6 fence=$7
    cat <<EOT
[node]
name = "$n"
admin_socket = "$WORK/$n.sock"
log_level = "$LOG"
shutdown_timeout = "5s"

[[vrrp]]
name = "front"
interface = "eth0"
vrid = 51
priority = $prio
advert_interval = "$adv"
virtual_ips = ["$VIP/24"]
garp = { repeat = 5, interval = "10ms" }
EOT
    [ "$cl" = 1 ] || return 0
    cat <<EOT

[cluster]
nodes = [ { name = "n1", addresses = ["10.1.0.1"] }, { name = "n2", addresses = ["10.1.0.2"] }, { name = "n3", addresses = ["10.1.0.3"] } ]
auth_key_file = "$WORK/cluster.key"
heartbeat_interval = "$hb"
miss_count = $miss
failback = "manual"
EOT
    [ "$fence" = 1 ] || return 0
    for t in $NODES; do
        cat <<EOT

[[cluster.fence_device]]
name = "power-$t"
agent = "/usr/sbin/fence_dummy"
nodes = ["$t"]
timeout = "20s"
options = { status_file = "$WORK/$t.power", type = "file" }
EOT
    done
}

# start_all ADVERT CLUSTER HEARTBEAT MISS FENCE
start_all() {
    local prio=150
    for n in $NODES; do
        printf on >"$WORK/$n.power"  # fence_dummy wants exactly "on"
        config "$n" "$prio" "$1" "$2" "$3" "$4" "$5" >"$WORK/$n.toml"
        setsid ip netns exec "$P$n" "$HALB" run -c "$WORK/$n.toml" >>"$WORK/$n.log" 2>&1 &
        PID[$n]=$!
        prio=$((prio - 50))
    done
}

kill_all() {
    for n in $NODES; do
        [ -n "${PID[$n]:-}" ] || continue
        kill -9 -- "-${PID[$n]}" 2>/dev/null || true
        wait "${PID[$n]}" 2>/dev/null || true
        unset "PID[$n]"
        ip -n "$P$n" addr del "$VIP/24" dev eth0 2>/dev/null || true
        cables "$n" up
    done
}

n2_became() {
    "$HALB" status --json --socket "$WORK/n2.sock" 2>/dev/null |
        jq '.vrrp.instances[0].counters.became_master // 0'
}

holds() { ip -n "$P$1" -o addr show dev eth0 | grep -q " $VIP/"; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

# wait_ready: n1 holds the VIP alone, the client reaches it, and (with a
# cluster) every node is quorate with 3 votes.
wait_ready() {
    local cl=$1
    for _ in $(seq 1 600); do
        if holds n1 && ! holds n2 && ! holds n3; then
            local ok=1
            if [ "$cl" = 1 ]; then
                for n in $NODES; do
                    "$HALB" status --json --socket "$WORK/$n.sock" 2>/dev/null |
                        grep -Eq '"votes": *3' || ok=0
                done
            fi
            if [ $ok = 1 ]; then
                local got
                got=$(nsx cl "$WORK/prober" probe "$VIP" "$PORT" 30 1000 | field last)
                [ "$got" = n1 ] && return 0
            fi
        fi
        sleep 0.05
    done
    echo "n1 never became master; logs in $WORK" >&2
    tail -20 "$WORK/n1.log" >&2
    return 1
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

RESULTS="$WORK/results"
: >"$RESULTS"

# one_run CASE
one_run() {
    local c=$1 adv cl hb miss fence kill budget
    case $c in
        vrrp10) adv=10ms cl=0 hb=- miss=- fence=0 kill=1 budget=400 ;;
        fast1ms) adv=10ms cl=1 hb=1ms miss=$MISS fence=0 kill=1 budget=400 ;;
        part100ms) adv=100ms cl=1 hb=100ms miss=3 fence=1 kill=0 budget=2500 ;;
        part1s) adv=100ms cl=1 hb=1s miss=3 fence=1 kill=0 budget=9000 ;;
        *) echo "unknown case $c" >&2; exit 2 ;;
    esac
    start_all "$adv" "$cl" "$hb" "$miss" "$fence"
    wait_ready "$cl"
    sleep 0.3
    nsx cl "$WORK/prober" probe "$VIP" "$PORT" "$((300 + budget))" 1000 >"$WORK/probe" &
    local pp=$!
    sleep 0.3
    # All cables at once; a crash also kills the process right after.
    local cut before
    before=$(n2_became)
    cut=$(date +%s.%N)
    cables n1 down
    if [ "$kill" = 1 ]; then
        kill -9 -- "-${PID[n1]}" 2>/dev/null || true
    fi
    wait "$pp" || true
    local out
    out=$(cat "$WORK/probe")
    echo "$c  $out" >&2
    [ "$(echo "$out" | field last)" = n2 ] || echo "  WARNING: n2 did not take over" >&2
    if [ "$fence" = 1 ] && [ "$(cat "$WORK/n1.power")" != off ]; then
        echo "  WARNING: n1 was not fenced" >&2
    fi
    # n2's side: it must not have been master before the cut (a false
    # detection, possible with 1 ms heartbeats on a loaded machine, moves
    # the VIP early: such a run is not counted). Later changes of n2
    # (losing and retaking the VIP after false detections between n2 and
    # n3) are counted as flaps.
    local st became reason at_s takeover=- valid=1 flaps
    st=$("$HALB" status --json --socket "$WORK/n2.sock" 2>/dev/null || echo '{}')
    became=$(echo "$st" | jq '.vrrp.instances[0].counters.became_master // 0')
    reason=$(echo "$st" | jq -r '.vrrp.instances[0].last_transition.reason // "-"')
    flaps=$((became > 0 ? became - 1 : 0))
    if [ "$before" != 0 ] || [ "$became" = 0 ]; then
        valid=0
        echo "  NOT COUNTED: n2 was master $before time(s) before the cut, $became after" >&2
    elif [ "$became" = 1 ]; then
        at_s=$(date -d "$(echo "$st" | jq -r '.vrrp.instances[0].last_transition.at')" +%s.%N)
        takeover=$(awk "BEGIN { printf \"%.0f\", ($at_s - $cut) * 1000 }")
        echo "  n2: master ${takeover} ms after the cut (reason $reason)" >&2
    else
        echo "  n2 lost and retook the VIP $flaps time(s) after taking over" >&2
    fi
    echo "$c $(echo "$out" | field max_gap_ms) $(echo "$out" | field lost) $takeover $reason $valid $flaps" >>"$RESULTS"
    kill_all
}

for c in $CASES; do
    runs=$RUNS
    [ "$c" = part1s ] && runs=$RUNS_SLOW
    for _ in $(seq 1 "$runs"); do
        one_run "$c"
    done
done

# --- summary -------------------------------------------------------------
echo
echo "Cluster failover, client probing the VIP every 1 ms; gap = longest run of lost"
echo "probes (ms); takeover = n2's transition to master after the cut (ms, 1 ms resolution,"
echo "runs without flaps); flaps = n2 lost and retook the VIP after its takeover"
printf "%-10s %5s %11s %9s %9s %14s %12s %8s\n" case runs "gap median" "gap min" "gap max" "takeover med" "not counted" flaps
for c in $CASES; do
    sel() { awk -v c="$c" -v k="$1" '$1 == c && $6 == 1 && $k != "-" { print $k }' "$RESULTS"; }
    n=$(sel 2 | grep -c . || true)
    bad=$(awk -v c="$c" '$1 == c && $6 != 1' "$RESULTS" | grep -c . || true)
    flaps=$(awk -v c="$c" '$1 == c && $6 == 1 { s += $7 } END { print s + 0 }' "$RESULTS")
    printf "%-10s %5s %11s %9s %9s %14s %12s %8s\n" "$c" "$n" "$(sel 2 | median)" \
        "$(sel 2 | sort -n | head -1)" "$(sel 2 | sort -n | tail -1)" "$(sel 4 | median)" "$bad" "$flaps"
done
echo
echo "all runs (case max_gap_ms lost takeover_ms reason counted flaps):"
cat "$RESULTS"
