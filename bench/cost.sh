#!/usr/bin/env bash
# What each observer costs a DNS server at its limit (issue 15), run by hand as root; not part of
# CI. Prints tables.
#
# Part cost: the server pinned to CPU 0 answers dnsperf pinned to CPU 1, unthrottled, LENGTH
# seconds per observer, in REPS rounds of every observer in OBSERVERS:
#   none; bpftrace (load.sh's sendto recipe, skipped when not installed); tcpdump (-w file on the
#   client veth); count (`dnslens count --by process`); trace (`dnslens trace --json > file`);
#   agent (`dnslens agent --sample 0 --output /dev/null`: metrics only); floor (the probe's drain example:
#   the hooks attached, every record read and dropped); floor-client (the same with the server
#   side kept in the kernel, as count and the metrics-only agent have it).
# Per observer: the median over rounds of its q/s over the same round's none, and its own CPU
# (utime, stime from /proc/PID/stat from dnsperf's start to 1 s after its end) per message it
# saw: for dnslens and the floors the messages the hooks saw (four per answered query on one
# host: those written to the ring buffer and those kept in the kernel), for tcpdump the packets
# it captured (two).
#
# Part hooks: the BPF programs' own time per DNS message. The floor attached, kernel.bpf_stats_enabled
# set to 1 for the part (restored after), RUNS_HOOKS runs at a fixed RATE_HOOKS for LENGTH
# seconds; per program of the floor's: runs and ns per run (bpftool prog show), and all of them
# per message written to the ring buffer. The stats add two clock reads to every run.
#
# Part pingpong: the same statistics with nothing else running: bench/pingpong.py, one thread
# in the client namespace playing client and server on its loopback (port 5399, which the
# floor is told is DNS), PINGPONG exchanges per run, RUNS_HOOKS runs; BPF ns per message.
#
# Part complete: RUNS runs at a fixed RATE of LENGTH_COMPLETE seconds under each of COMPLETE_WITH
# (count, trace); dnsperf's queries sent against the queries dnslens reported from dnsperf, the
# retransmits among the missing, and what the kernel side counted lost, per run.
#
# Knobs (environment): PARTS="cost complete" SERVERS=dnsmasq (or "dnsmasq unbound")
#   OBSERVERS="none bpftrace tcpdump count trace agent floor floor-client" REPS=3 LENGTH=8
#   RUNS=10 RATE=50000 LENGTH_COMPLETE=10 COMPLETE_WITH=count RUNS_HOOKS=3 RATE_HOOKS=30000
#   PINGPONG=200000; bench/lib.sh's (KEEP, DNSLENS,
#   DRAIN, OUT, SERVER_CPU=0, CLIENT_CPU=1).
# Build first: cargo build --release && cargo build --release -p dnslens-probe --example drain
set -uo pipefail

PARTS=${PARTS:-"cost complete"}
SERVERS=${SERVERS:-dnsmasq}
OBSERVERS=${OBSERVERS:-"none bpftrace tcpdump count trace agent floor floor-client"}
REPS=${REPS:-3}
LENGTH=${LENGTH:-8}
RUNS=${RUNS:-10}
RATE=${RATE:-50000}
LENGTH_COMPLETE=${LENGTH_COMPLETE:-10}
COMPLETE_WITH=${COMPLETE_WITH:-count}
RUNS_HOOKS=${RUNS_HOOKS:-3}
RATE_HOOKS=${RATE_HOOKS:-30000}
PINGPONG=${PINGPONG:-200000}
SERVER_CPU=${SERVER_CPU-0}
CLIENT_CPU=${CLIENT_CPU-1}

source "$(dirname "$0")/lib.sh"
need dnsperf tcpdump taskset ip $SERVERS
[ -x "$DNSLENS" ] || die "$DNSLENS missing: cargo build --release"
[ -x "$DRAIN" ] || die "$DRAIN missing: cargo build --release -p dnslens-probe --example drain"
[ "${OBSERVERS%% *}" = none ] || die "OBSERVERS must start with none: the others are compared with it"
if [[ " $OBSERVERS " == *" bpftrace "* ]] && ! command -v bpftrace >/dev/null; then
    echo "bpftrace not installed: its observer is skipped"
    OBSERVERS=$(echo "$OBSERVERS" | sed 's/\bbpftrace\b//')
fi

# The median of the numbers on stdin, one a line; "-" for none.
median() {
    sort -g | awk '{v[NR] = $1}
        END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# One unthrottled run: server $1, round $2, observer $3. Appends "server round observer qps
# ratio user-ticks sys-ticks messages lost" to $OUT/cost.runs.
cost_run() {
    local server=$1 round=$2 obs=$3
    local tag="$OUT/cost-$server-$round-$obs" before=(0 0) after=(0 0)
    start_observer "$obs" "$tag"
    [ -n "$OBS_PID" ] && read -r -a before < <(cpu_ticks "$OBS_PID")
    perf "$tag.perf" -l "$LENGTH"
    sleep 1 # let the observer drain
    [ -n "$OBS_PID" ] && read -r -a after < <(cpu_ticks "$OBS_PID")
    stop_observer
    local qps msgs=- lost=-
    qps=$(field "$tag.perf" "Queries per second")
    [ "$obs" = none ] && BASE_QPS=$qps
    case $obs in
    count | trace | agent | floor | floor-client)
        msgs=$(events_of "$tag.err")
        # Without -v the agent names the kernel's counters only when something was lost.
        lost=$(lost_of "$tag.err" | tr ' ' _)
        lost=${lost:-0}
        ;;
    tcpdump)
        msgs=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$tag.err")
        lost=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$tag.err")
        ;;
    esac
    local ratio
    ratio=$(awk -v a="$qps" -v b="$BASE_QPS" 'BEGIN {printf "%.3f", a / b}')
    echo "$server $round $obs $qps $ratio $((after[0] - before[0])) $((after[1] - before[1])) ${msgs:--} ${lost:--}" |
        tee -a "$OUT/cost.runs"
    [ "$KEEP" = 1 ] || rm -f "$tag.json" "$tag.pcap"
}

# The table of medians of server $1 from $OUT/cost.runs.
cost_table() {
    echo "| server | observer | ratio to none, median | by round | q/s, median | observer CPU µs per message, user / sys (median) | messages per run, median | lost, all rounds |"
    echo "|---|---|---|---|---|---|---|---|"
    local obs runs
    for obs in $OBSERVERS; do
        runs=$(awk -v s="$1" -v o="$obs" '$1 == s && $3 == o' "$OUT/cost.runs")
        local per_msg='$8 == "-" || $8 == 0 {next}'
        echo "| $1 | $obs | $(awk '{print $5}' <<<"$runs" | median) | $(awk '{print $5}' <<<"$runs" | paste -sd ' ') \
| $(awk '{print $4}' <<<"$runs" | median | xargs printf %.0f) \
| $(awk -v t="$TICK" "$per_msg"' {printf "%.2f\n", $6 / t / $8 * 1e6}' <<<"$runs" | median) / \
$(awk -v t="$TICK" "$per_msg"' {printf "%.2f\n", $7 / t / $8 * 1e6}' <<<"$runs" | median) \
| $(awk '$8 != "-" {print $8}' <<<"$runs" | median) | $(awk '{print $9}' <<<"$runs" | paste -sd ' ') |"
    done
}

run_cost() {
    local server round obs
    # The tables are of this run alone, also where OUT is reused.
    : >"$OUT/cost.runs"
    for server in $SERVERS; do
        start_server "$server"
        echo "server round observer qps ratio user-ticks sys-ticks messages lost (CLK_TCK $TICK)"
        for round in $(seq "$REPS"); do
            for obs in $OBSERVERS; do
                cost_run "$server" "$round" "$obs"
            done
        done
        stop_server
    done
    for server in $SERVERS; do
        cost_table "$server"
    done | tee "$OUT/cost.md"
}

# "id name run_time_ns run_cnt" of each BPF program process $1 holds (its fds' fdinfo), once.
prog_stats() {
    local info id
    for info in "/proc/$1/fdinfo/"*; do
        id=$(awk '$1 == "prog_id:" {print $2}' "$info" 2>/dev/null)
        [ -n "$id" ] || continue
        echo "$id $(bpftool prog show id "$id" --json | jq -r .name) $(awk '$1 == "run_time_ns:" {t = $2} $1 == "run_cnt:" {c = $2} END {print t, c}' "$info")"
    done | sort -u -k1,1
}

run_hooks() {
    local server run
    need bpftool jq
    BPF_STATS_WAS=$(cat /proc/sys/kernel/bpf_stats_enabled)
    sysctl -qw kernel.bpf_stats_enabled=1
    echo "| server | run | messages | program | runs | runs per message | ns per run | ns per message |" | tee "$OUT/hooks.md"
    echo "|---|---|---|---|---|---|---|---|" | tee -a "$OUT/hooks.md"
    for server in $SERVERS; do
        start_server "$server"
        for run in $(seq "$RUNS_HOOKS"); do
            local tag="$OUT/hooks-$server-$run"
            start_observer floor "$tag"
            prog_stats "$OBS_PID" >"$tag.before"
            perf "$tag.perf" -l "$LENGTH" -Q "$RATE_HOOKS"
            sleep 1
            prog_stats "$OBS_PID" >"$tag.after"
            stop_observer
            local msgs
            msgs=$(events_of "$tag.err")
            join "$tag.before" "$tag.after" | awk -v s="$server" -v r="$run" -v m="$msgs" '
                {runs = $7 - $4; ns = $6 - $3; if (runs == 0) next; all += ns
                 printf "| %s | %s | %s | %s | %d | %.2f | %.0f | %.0f |\n", s, r, m, $2, runs, runs / m, ns / runs, ns / m}
                END {printf "| %s | %s | %s | all | | | | %.0f |\n", s, r, m, all / m}' | tee -a "$OUT/hooks.md"
        done
        stop_server
    done
    sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_WAS"
}

run_pingpong() {
    local run port=5399
    need bpftool jq python3
    BPF_STATS_WAS=$(cat /proc/sys/kernel/bpf_stats_enabled)
    sysctl -qw kernel.bpf_stats_enabled=1
    echo "| run | exchanges | program | runs per message | ns per run | ns per message |" | tee "$OUT/pingpong.md"
    echo "|---|---|---|---|---|---|" | tee -a "$OUT/pingpong.md"
    for run in $(seq "$RUNS_HOOKS"); do
        local tag="$OUT/pingpong-$run"
        "$DRAIN" "$port" 2>"$tag.err" &
        OBS_PID=$!
        PIDS+=("$OBS_PID")
        wait_for "$tag.err" "drain: attached"
        prog_stats "$OBS_PID" >"$tag.before"
        "${CLIENT_ON[@]}" ip netns exec "$NS_C" python3 "$ROOT/bench/pingpong.py" "$PINGPONG" "$port" ||
            die "pingpong.py failed"
        prog_stats "$OBS_PID" >"$tag.after"
        stop_observer
        join "$tag.before" "$tag.after" | awk -v r="$run" -v n="$PINGPONG" '
            {runs = $7 - $4; ns = $6 - $3; if (runs == 0) next; all += ns
             printf "| %s | %d | %s | %.2f | %.0f | %.0f |\n", r, n, $2, runs / n / 4, ns / runs, ns / n / 4}
            END {printf "| %s | %d | all | | | %.0f |\n", r, n, all / n / 4}' | tee -a "$OUT/pingpong.md"
    done
    sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_WAS"
}

# Queries from dnsperf that observer $1 reported in files $2.*.
reported() {
    case $1 in
    count) LC_ALL=C grep -o '"process":"dnsperf","queries":[0-9]*' "$2.count" | awk -F: '{n += $3} END {print n + 0}' ;;
    trace) json_counts "$2.json" | awk '{print $1}' ;;
    esac
}

# Queries pairing took for retransmits (not reported as queries) in dnslens's stderr $1:
# dnsperf reuses ids, and an id and name asked again while the first is pending looks resent.
retransmits() { sed -n 's/^dnslens: pairing: .* \([0-9]*\) retransmits.*/\1/p' "$1"; }

run_complete() {
    {
        echo "| server | observer | run | rate | seconds | dnsperf sent | completed | reported | missing | of them retransmits | kernel lost |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|"
    } | tee "$OUT/complete.md"
    local server obs run
    for server in $SERVERS; do
        start_server "$server"
        for obs in $COMPLETE_WITH; do
            for run in $(seq "$RUNS"); do
                local tag="$OUT/complete-$server-$obs-$run"
                start_observer "$obs" "$tag"
                perf "$tag.perf" -l "$LENGTH_COMPLETE" -Q "$RATE"
                sleep 1
                stop_observer
                local sent seen
                sent=$(field "$tag.perf" "Queries sent")
                seen=$(reported "$obs" "$tag")
                echo "| $server | $obs | $run | $RATE | $LENGTH_COMPLETE | $sent | $(field "$tag.perf" "Queries completed") | $seen | $((sent - seen)) | $(retransmits "$tag.err") | $(lost_of "$tag.err") |" |
                    tee -a "$OUT/complete.md"
                [ "$KEEP" = 1 ] || rm -f "$tag.json"
            done
        done
        stop_server
    done
}

bench_setup
echo "pinned: server to CPU ${SERVER_CPU:-none}, dnsperf to CPU ${CLIENT_CPU:-none}"
for part in $PARTS; do
    echo "== $part"
    "run_$part"
done
