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
# The namespaces, server and observers are bench/lib.sh's: traffic stays inside the two
# namespaces it creates; everything created is named dlb<pid>-* and removed on exit.
#
# Knobs (environment): PARTS="steps resolvers flood" SERVERS="dnsmasq unbound"
#   RATES="10000 50000 100000 max" OBSERVERS="none dnslens bpftrace tcpdump"
#   SHORT=15 (seconds per step) LONG=60 (the 50k step with dnslens) FLOOD=10000000 (names)
#   TORTURE_RATE=50000 (queries/s of the unanswered flood; PARTS=torture runs it)
#   PARTS=metrics: the answered flood under `dnslens agent`, counting /metrics series
#   RESOLVER_SECONDS=15; and bench/lib.sh's (KEEP, DNSLENS, OUT, pinning)
set -uo pipefail

PARTS=${PARTS:-"steps resolvers flood"}
SERVERS=${SERVERS:-"dnsmasq unbound"}
RATES=${RATES:-"10000 50000 100000 max"}
OBSERVERS=${OBSERVERS:-"none dnslens bpftrace tcpdump"}
SHORT=${SHORT:-15}
LONG=${LONG:-60}
FLOOD=${FLOOD:-10000000}
TORTURE_RATE=${TORTURE_RATE:-50000}
RESOLVER_SECONDS=${RESOLVER_SECONDS:-15}

source "$(dirname "$0")/lib.sh"
need dnsperf bpftrace tcpdump cc ip $SERVERS
[ -x "$DNSLENS" ] || die "$DNSLENS missing: cargo build --release"

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
    perf "$tag.perf" -l "$dur" "${qflag[@]}"
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

bench_setup
cc -O2 -Wall -pthread -o "$OUT/dnsload" "$ROOT/bench/dnsload.c" || die "building bench/dnsload.c"
for part in $PARTS; do
    echo "== $part"
    "run_$part"
done
