#!/usr/bin/env bash
# Load bench for dnslens (issue 4), run by hand as root; not part of CI. Prints tables.
#
# A DNS server (dnsmasq, unbound) answers a local zone (bench.test) in one network namespace;
# dnsperf drives it from another over a veth pair at stepped rates, once per observer: none,
# dnslens (trace --json > file), the bpftrace sendto recipe, tcpdump on the client veth. Then
# glibc getaddrinfo and connected-socket load (bench/dnsload.c), and a flood of distinct random
# names with dnslens's RSS sampled over time (answered: flood; unanswered: torture).
# Numbers: docs/performance.md.
#
# Traffic stays inside the two namespaces this script creates (no default route, nothing on the
# host's resolver). Everything created is named dlb<pid>-* and removed on exit, also on failure.
#
# Knobs (environment): PARTS="steps resolvers flood" SERVERS="dnsmasq unbound"
#   RATES="10000 50000 100000 max" OBSERVERS="none dnslens bpftrace tcpdump"
#   SHORT=15 (seconds per step) LONG=60 (the 50k step with dnslens) FLOOD=10000000 (names)
#   TORTURE_RATE=50000 (queries/s of the unanswered flood; PARTS=torture runs it)
#   PARTS=metrics: the answered flood under `dnslens agent`, counting /metrics series
#   RESOLVER_SECONDS=15 KEEP=1 (keep the captures) DNSLENS=target/release/dnslens OUT=dir
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DNSLENS=${DNSLENS:-$ROOT/target/release/dnslens}
PARTS=${PARTS:-"steps resolvers flood"}
SERVERS=${SERVERS:-"dnsmasq unbound"}
RATES=${RATES:-"10000 50000 100000 max"}
OBSERVERS=${OBSERVERS:-"none dnslens bpftrace tcpdump"}
SHORT=${SHORT:-15}
LONG=${LONG:-60}
FLOOD=${FLOOD:-10000000}
TORTURE_RATE=${TORTURE_RATE:-50000}
RESOLVER_SECONDS=${RESOLVER_SECONDS:-15}
KEEP=${KEEP:-0}

P=dlb$$
NS_S=$P-s
NS_C=$P-c
VETH_S=$P-vs
VETH_C=$P-vc
SRV=198.18.0.1
CLI=198.18.0.2
OUT=${OUT:-/tmp/$P}
TICK=$(getconf CLK_TCK)
PIDS=()

die() { echo "load.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (BPF, network namespaces)"
for tool in dnsperf bpftrace tcpdump dnsmasq unbound cc ip; do
    command -v "$tool" >/dev/null || die "$tool missing: apt-get install -y dnsperf bpftrace tcpdump unbound dnsmasq-base build-essential iproute2"
done
[ -x "$DNSLENS" ] || die "$DNSLENS missing: cargo build --release"

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    ip netns pids "$NS_S" 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns pids "$NS_C" 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns del "$NS_S" 2>/dev/null
    ip netns del "$NS_C" 2>/dev/null
    rm -rf "/etc/netns/$NS_C"
    [ "$KEEP" = 1 ] || rm -f "$OUT"/*.json "$OUT"/*.pcap "$OUT"/flood.txt
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT"
ulimit -l unlimited 2>/dev/null
ulimit -n 65536 2>/dev/null

setup_net() {
    ip netns add "$NS_S" && ip netns add "$NS_C" || die "creating namespaces"
    ip link add "$VETH_C" netns "$NS_C" type veth peer name "$VETH_S" netns "$NS_S" || die "veth"
    ip -n "$NS_S" addr add "$SRV/30" dev "$VETH_S"
    ip -n "$NS_C" addr add "$CLI/30" dev "$VETH_C"
    for ns in "$NS_S" "$NS_C"; do
        ip -n "$ns" link set lo up
    done
    ip -n "$NS_S" link set "$VETH_S" up
    ip -n "$NS_C" link set "$VETH_C" up
    # glibc in the client namespace asks our server (ip netns exec bind-mounts this file over
    # /etc/resolv.conf inside the namespace only).
    mkdir -p "/etc/netns/$NS_C"
    printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$SRV" >"/etc/netns/$NS_C/resolv.conf"
    ip -n "$NS_C" neigh show >/dev/null || die "client namespace unusable"
}

# Starts $1 (dnsmasq or unbound) in the server namespace; sets SERVER_PID.
start_server() {
    case $1 in
    dnsmasq)
        ip netns exec "$NS_S" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv \
            --no-hosts --no-poll --bind-interfaces --listen-address="$SRV" --port=53 \
            --address=/bench.test/198.18.9.9 --pid-file= --user=root --group=root \
            --dns-forward-max=10000 >"$OUT/server.log" 2>&1 &
        ;;
    unbound)
        cat >"$OUT/unbound.conf" <<EOF
server:
    interface: $SRV
    port: 53
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "$OUT"
    pidfile: ""
    use-syslog: no
    logfile: "$OUT/server.log"
    verbosity: 0
    num-threads: 1
    so-rcvbuf: 4m
    so-sndbuf: 4m
    do-ip6: no
    access-control: 198.18.0.0/24 allow
    module-config: "iterator"
    local-zone: "bench.test." redirect
    local-data: "bench.test. 300 IN A 198.18.9.9"
remote-control:
    control-enable: no
EOF
        ip netns exec "$NS_S" unbound -d -c "$OUT/unbound.conf" >>"$OUT/server.log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local i
    for i in $(seq 50); do
        ip netns exec "$NS_C" dnsperf -s "$SRV" -d "$OUT/names.txt" -n 1 -t 1 2>&1 |
            grep -q 'Queries completed:[[:space:]]*1000 ' && return 0
        sleep 0.2
    done
    die "$1 does not answer; see $OUT/server.log"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
}

# Waits until file $1 contains $2 (an observer says it is attached), at most 60 s.
wait_for() {
    local i
    for i in $(seq 600); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "timed out waiting for '$2' in $1"
}

# Starts observer $1 writing to files named $2.*; sets OBS_PID.
start_observer() {
    OBS_PID=
    case $1 in
    none) return 0 ;;
    dnslens)
        "$DNSLENS" trace -v --json --no-kubernetes >"$2.json" 2>"$2.err" &
        OBS_PID=$!
        wait_for "$2.err" "tracing DNS"
        ;;
    bpftrace)
        # The sendto recipe with the port's bytes swapped (bswap is bpftrace's ntohs).
        cat >"$OUT/sendto.bt" <<'EOF'
tracepoint:syscalls:sys_enter_sendto
/args->addr != 0/
{
    $sa = (struct sockaddr_in *)args->addr;
    if ($sa->sin_family == 2 && bswap($sa->sin_port) == 53) {
        @dns_queries[comm] = count();
    }
}
EOF
        bpftrace -o "$2.bt" "$OUT/sendto.bt" >/dev/null 2>"$2.err" &
        OBS_PID=$!
        wait_for "$2.bt" "Attaching"
        ;;
    tcpdump)
        ip netns exec "$NS_C" tcpdump -n -i "$VETH_C" -s 0 -B 16384 -w "$2.pcap" udp port 53 \
            2>"$2.err" &
        OBS_PID=$!
        wait_for "$2.err" "listening on"
        ;;
    esac
    PIDS+=("$OBS_PID")
}

# Host CPU ticks, "busy total", from /proc/stat (idle and iowait are not busy; guest time is
# already in user).
host_ticks() { awk '$1 == "cpu" {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

# utime and stime of $1 in clock ticks.
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat" 2>/dev/null || echo "0 0"; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }

stop_observer() {
    [ -n "$OBS_PID" ] || return 0
    kill -INT "$OBS_PID" 2>/dev/null
    wait "$OBS_PID" 2>/dev/null
    OBS_PID=
}

# dnsperf report field $2 of file $1.
field() { awk -F: -v k="$2" '$1 ~ "^ *"k"$" {split($2, a, " "); print a[1]; exit}' "$1"; }

# dnslens's messages in $1 (JSON lines) by kind and role: "cq cr sq sr other".
json_counts() {
    LC_ALL=C grep -o '"kind":"[a-z]*","role":"[a-z]*"' "$1" | LC_ALL=C sort | uniq -c |
        awk '{n[$2] = $1}
             END {
                 cq = n["\"kind\":\"query\",\"role\":\"client\""] + 0
                 cr = n["\"kind\":\"response\",\"role\":\"client\""] + 0
                 sq = n["\"kind\":\"query\",\"role\":\"server\""] + 0
                 sr = n["\"kind\":\"response\",\"role\":\"server\""] + 0
                 t = 0; for (k in n) t += n[k]
                 print cq, cr, sq, sr, t - cq - cr - sq - sr
             }'
}

# Messages the kernel lost, and "+N lines dropped" when the output stalled (dnslens drops lines
# its output takes none of for a second).
lost_of() {
    local lost dropped
    lost=$(sed -n 's/.*kernel: [0-9]* events, \([0-9]*\) lost.*/\1/p' "$1" | head -1)
    dropped=$(sed -n 's/^dnslens: output: .*; \([0-9]*\) lines dropped.*/\1/p' "$1" | head -1)
    if [ "${dropped:-0}" -gt 0 ]; then echo "$lost +$dropped lines dropped"; else echo "$lost"; fi
}

STEPS_HEADER="| server | rate | observer | seconds | sent | completed | qps | ratio | avg lat ms | max lat ms | observer saw | dnslens lost | user s/M msg | sys s/M msg | user us/msg | VmHWM MB | host busy |"

# One dnsperf step: server $1, rate $2, observer $3.
step() {
    local server=$1 rate=$2 obs=$3 dur=$SHORT
    [ "$rate" = 50000 ] && [ "$obs" = dnslens ] && dur=$LONG
    local tag="$OUT/$server-$rate-$obs" qflag=()
    [ "$rate" = max ] || qflag=(-Q "$rate")
    start_observer "$obs" "$tag"
    local before=(0 0)
    [ "$obs" = dnslens ] && read -r -a before < <(cpu_ticks "$OBS_PID")
    local host_before host_after
    read -r -a host_before < <(host_ticks)
    ip netns exec "$NS_C" dnsperf -s "$SRV" -d "$OUT/names.txt" -l "$dur" "${qflag[@]}" \
        -c 8 -T 1 -q 2000 -t 2 >"$tag.perf" 2>&1
    read -r -a host_after < <(host_ticks)
    sleep 1 # let the observer drain
    local after=(0 0) hwm=
    if [ "$obs" = dnslens ]; then
        read -r -a after < <(cpu_ticks "$OBS_PID")
        hwm=$(status_kb "$OBS_PID" VmHWM)
    fi
    stop_observer
    local sent completed qps lat maxlat
    sent=$(field "$tag.perf" "Queries sent")
    completed=$(field "$tag.perf" "Queries completed")
    qps=$(field "$tag.perf" "Queries per second")
    lat=$(sed -n 's/.*Average Latency (s): *\([0-9.]*\).*/\1/p' "$tag.perf")
    maxlat=$(sed -n 's/.*Average Latency (s):.*max \([0-9.]*\)).*/\1/p' "$tag.perf")
    [ "$obs" = none ] && BASE_QPS[$rate]=$qps
    local ratio saw="-" lost="-" user="-" sys="-" usmsg="-" mb="-" busy
    # Share of both cores in use during the step: at 100% with no observer, any observer's CPU
    # comes out of the server's and dnsperf's.
    busy=$(awk -v b=$((host_after[0] - host_before[0])) -v t=$((host_after[1] - host_before[1])) \
        'BEGIN {if (t > 0) printf "%.0f%%", 100 * b / t; else print "-"}')
    ratio=$(awk -v a="$qps" -v b="${BASE_QPS[$rate]:-0}" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "-"}')
    case $obs in
    dnslens)
        local c
        read -r -a c < <(json_counts "$tag.json")
        local msgs=$((c[0] + c[1] + c[2] + c[3]))
        # dnsperf's side: its queries and the responses it got; the server's side: the same.
        saw=$(awk -v cq="${c[0]}" -v cr="${c[1]}" -v sq="${c[2]}" -v sr="${c[3]}" -v s="$sent" -v d="$completed" \
            'BEGIN {printf "client %d/%d (%.4f) server %d/%d (%.4f)", cq + cr, s + d, (cq + cr) / (s + d), sq + sr, s + d, (sq + sr) / (s + d)}')
        lost=$(lost_of "$tag.err")
        read -r user sys usmsg < <(awk -v u=$((after[0] - before[0])) -v s=$((after[1] - before[1])) \
            -v t="$TICK" -v m="$msgs" \
            'BEGIN {printf "%.3f %.3f %.2f\n", u / t / m * 1e6, s / t / m * 1e6, u / t / m * 1e6}')
        mb=$(awk -v k="$hwm" 'BEGIN {printf "%.1f", k / 1024}')
        ;;
    bpftrace)
        saw="sendto $(awk '/@dns_queries\[dnsperf\]/ {print $2}' "$tag.bt")/$sent"
        ;;
    tcpdump)
        saw="$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$tag.err") pkts, $(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$tag.err") dropped /$((sent + completed))"
        ;;
    esac
    local row="| $server | $rate | $obs | $dur | $sent | $completed | $qps | $ratio | $(awk -v l="$lat" 'BEGIN{printf "%.3f", l*1000}') | $(awk -v l="$maxlat" 'BEGIN{printf "%.1f", l*1000}') | $saw | $lost | $user | $sys | $usmsg | $mb | $busy |"
    echo "$row" | tee -a "$OUT/steps.md"
    [ "$KEEP" = 1 ] || rm -f "$tag.json" "$tag.pcap"
}

run_steps() {
    echo "$STEPS_HEADER" | tee -a "$OUT/steps.md"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" | tee -a "$OUT/steps.md"
    local server rate obs
    for server in $SERVERS; do
        start_server "$server"
        declare -gA BASE_QPS=()
        for rate in $RATES; do
            for obs in $OBSERVERS; do
                step "$server" "$rate" "$obs"
            done
        done
        stop_server
    done
}

# glibc getaddrinfo callers and connected sockets, with dnslens and the bpftrace recipe both
# attached (completeness only: the load is closed-loop, so throughput is not compared).
run_resolvers() {
    start_server dnsmasq
    echo "| load | seconds | client queries sent | responses received | dnslens client queries | dnslens client responses | dnslens server q+r | dnslens lost | bpftrace sendto |" | tee -a "$OUT/resolvers.md"
    echo "|---|---|---|---|---|---|---|---|---|" | tee -a "$OUT/resolvers.md"
    local load tag out sent recv c bt lost
    for load in "gai 64" "conn 16"; do
        set -- $load
        tag="$OUT/resolver-$1"
        start_observer dnslens "$tag"
        local lens=$OBS_PID
        start_observer bpftrace "$tag-bt"
        local btpid=$OBS_PID
        if [ "$1" = gai ]; then
            ip netns exec "$NS_C" "$OUT/dnsload" gai "$2" "$RESOLVER_SECONDS" >"$tag.out"
        else
            ip netns exec "$NS_C" "$OUT/dnsload" conn "$SRV" "$2" "$RESOLVER_SECONDS" >"$tag.out"
        fi
        sleep 1
        OBS_PID=$btpid stop_observer
        OBS_PID=$btpid
        stop_observer
        OBS_PID=$lens
        stop_observer
        if [ "$1" = gai ]; then
            # glibc asks A and AAAA for each lookup (sendmmsg of two on a connected socket).
            sent=$(($(awk '$1 == "lookups" || $1 == "failed" {n += $2} END {print n}' "$tag.out") * 2))
            recv=$(($(awk '$1 == "lookups" {print $2}' "$tag.out") * 2))
            load="glibc getaddrinfo, $2 threads (A+AAAA)"
        else
            sent=$(awk '$1 == "sent" {print $2}' "$tag.out")
            recv=$(awk '$1 == "received" {print $2}' "$tag.out")
            load="connected UDP, $2 sockets, write/read + send/recv"
        fi
        read -r -a c < <(json_counts "$tag.json")
        bt=$(awk '/@dns_queries/ {n += $2} END {print n + 0}' "$tag-bt.bt")
        lost=$(lost_of "$tag.err")
        echo "| $load | $RESOLVER_SECONDS | $sent | $recv | ${c[0]} | ${c[1]} | $((c[2] + c[3])) | $lost | $bt |" | tee -a "$OUT/resolvers.md"
        [ "$KEEP" = 1 ] || rm -f "$tag.json"
    done
    stop_server
}

# The RSS row of process $1 at $2 seconds.
rss_row() {
    echo "| $2 | $(awk -v k="$(status_kb "$1" VmRSS)" 'BEGIN{printf "%.1f", k/1024}') | $(awk -v k="$(status_kb "$1" VmHWM)" 'BEGIN{printf "%.1f", k/1024}') |"
}

# Runs the load command "$@" in the client namespace under a dnslens writing JSON to /dev/null
# (the same formatting work, without tens of GB on disk), sampling dnslens's RSS every 5 s into
# $OUT/$tag-rss.md. $tag names the part. LENS_ARGS (an array) replaces `trace --json
# --no-kubernetes`; with METRICS_AT set (the agent's address) each row also counts the series
# /metrics exposes.
flood_under_dnslens() {
    local tag=$1
    shift
    local args=(trace -v --json --no-kubernetes)
    [ -n "${LENS_ARGS+x}" ] && args=("${LENS_ARGS[@]}")
    "$DNSLENS" "${args[@]}" >/dev/null 2>"$OUT/$tag.err" &
    local lens=$!
    PIDS+=("$lens")
    wait_for "$OUT/$tag.err" "tracing DNS"
    local before after
    before=$(cpu_ticks "$lens")
    ip netns exec "$NS_C" "$@" >"$OUT/$tag.out" 2>&1 &
    local load=$!
    PIDS+=("$load")
    local t=0
    echo "| seconds | VmRSS MB | VmHWM MB |${METRICS_AT:+ series |}" >"$OUT/$tag-rss.md"
    echo "|---|---|---|${METRICS_AT:+---|}" >>"$OUT/$tag-rss.md"
    while kill -0 "$load" 2>/dev/null; do
        echo "$(rss_row "$lens" "$t")$(series_cell)" >>"$OUT/$tag-rss.md"
        sleep 5
        t=$((t + 5))
    done
    wait "$load"
    sleep 2
    echo "$(rss_row "$lens" "$t (end)")$(series_cell)" >>"$OUT/$tag-rss.md"
    after=$(cpu_ticks "$lens")
    kill -INT "$lens"
    wait "$lens"
    cat "$OUT/$tag-rss.md"
    echo "dnslens cpu ticks (utime stime) before: $before after: $after (CLK_TCK $TICK)"
    grep '^dnslens:' "$OUT/$tag.err"
}

# The number of samples (series) the agent at METRICS_AT exposes, as a table cell; nothing
# without METRICS_AT.
series_cell() {
    [ -n "${METRICS_AT:-}" ] || return 0
    echo " $(curl -s "http://$METRICS_AT/metrics" | grep -vc '^#') |"
}

# FLOOD distinct random names at dnsperf's maximum rate, answered by dnsmasq.
run_flood() {
    "$OUT/dnsload" gen "$FLOOD" >"$OUT/flood.txt"
    start_server dnsmasq
    flood_under_dnslens flood dnsperf -s "$SRV" -d "$OUT/flood.txt" -n 1 -c 8 -T 1 -q 2000 -t 2
    echo "dnsperf: $(grep -E 'Queries (sent|completed|lost)|Queries per second|Run time' "$OUT/flood.out" | tr -s ' ' | tr '\n' ';')"
    stop_server
}

# FLOOD distinct random names at TORTURE_RATE per second to a server address where nothing
# listens: every query stays pending until it is evicted (water torture, dead upstream).
run_torture() {
    flood_under_dnslens torture "$OUT/dnsload" blast "$SRV" "$FLOOD" "$TORTURE_RATE"
    echo "dnsload: $(tr '\n' ';' <"$OUT/torture.out")"
}

# The flood answered by dnsmasq, under `dnslens agent` with metrics on loopback: RSS and the
# number of series /metrics exposes, sampled every 5 s (issue 6: bounded cardinality).
run_metrics() {
    "$OUT/dnsload" gen "$FLOOD" >"$OUT/flood.txt"
    start_server dnsmasq
    local port=$((19000 + $$ % 1000))
    LENS_ARGS=(agent --no-kubernetes --output /dev/null --metrics-address "127.0.0.1:$port")
    METRICS_AT=127.0.0.1:$port
    flood_under_dnslens metrics dnsperf -s "$SRV" -d "$OUT/flood.txt" -n 1 -c 8 -T 1 -q 2000 -t 2
    unset LENS_ARGS METRICS_AT
    echo "dnsperf: $(grep -E 'Queries (sent|completed|lost)|Queries per second|Run time' "$OUT/metrics.out" | tr -s ' ' | tr '\n' ';')"
    stop_server
}

setup_net
awk 'BEGIN {for (i = 0; i < 1000; i++) printf "q%d.bench.test %s\n", i, (i % 4 == 3) ? "AAAA" : "A"}' >"$OUT/names.txt"
cc -O2 -Wall -pthread -o "$OUT/dnsload" "$ROOT/bench/dnsload.c" || die "building bench/dnsload.c"
{
    echo "machine: $(nproc) cpus, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
    echo "dnslens: $DNSLENS ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null))"
    echo "results in $OUT"
    # Left at 1, every BPF program on the host (dnslens's and others') pays two clock reads a run.
    [ "$(cat /proc/sys/kernel/bpf_stats_enabled 2>/dev/null)" = 1 ] &&
        echo "WARNING: kernel.bpf_stats_enabled is 1: hooks cost more than they would (sysctl -w kernel.bpf_stats_enabled=0)"
} | tee "$OUT/machine.txt"
for part in $PARTS; do
    echo "== $part"
    "run_$part"
done
