# Shared by the DNS load benches (load.sh, cost.sh), sourced after their knobs: two network
# namespaces joined by a veth pair, a DNS server in one and dnsperf in the other, observers that
# watch them, and the figures read from what each wrote. Traffic stays inside the namespaces (no
# default route, nothing on the host's resolver). Everything created is named dlb<pid>-* and
# removed on exit, also on failure.
#
# Knobs (environment): DNSLENS=target/release/dnslens DRAIN=target/release/examples/drain
#   SERVER_CPU, CLIENT_CPU (pin the server and dnsperf to one CPU each; unset: not pinned)
#   KEEP=1 (keep the captures) OUT=dir

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DNSLENS=${DNSLENS:-$ROOT/target/release/dnslens}
DRAIN=${DRAIN:-$ROOT/target/release/examples/drain}
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
# Command prefixes that pin the server and dnsperf (taskset execs, so $! stays their pid).
SERVER_ON=()
[ -n "${SERVER_CPU:-}" ] && SERVER_ON=(taskset -c "$SERVER_CPU")
CLIENT_ON=()
[ -n "${CLIENT_CPU:-}" ] && CLIENT_ON=(taskset -c "$CLIENT_CPU")

die() { echo "${0##*/}: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (BPF, network namespaces)"

# Dies unless every tool named is installed.
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null ||
            die "$tool missing: apt-get install -y dnsperf bpftrace tcpdump unbound dnsmasq-base build-essential iproute2"
    done
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    ip netns pids "$NS_S" 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns pids "$NS_C" 2>/dev/null | xargs -r kill 2>/dev/null
    ip netns del "$NS_S" 2>/dev/null
    ip netns del "$NS_C" 2>/dev/null
    rm -rf "/etc/netns/$NS_C"
    # A part that turned BPF statistics on (cost.sh's hooks) and did not finish.
    [ -n "${BPF_STATS_WAS:-}" ] && sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_WAS"
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
        "${SERVER_ON[@]}" ip netns exec "$NS_S" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv \
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
        "${SERVER_ON[@]}" ip netns exec "$NS_S" unbound -d -c "$OUT/unbound.conf" >>"$OUT/server.log" 2>&1 &
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

# Starts observer $1 writing to files named $2.*; sets OBS_PID. dnslens and trace are the
# same: `trace --json > file`.
start_observer() {
    OBS_PID=
    case $1 in
    none) return 0 ;;
    dnslens | trace)
        "$DNSLENS" trace -v --json --no-kubernetes >"$2.json" 2>"$2.err" &
        OBS_PID=$!
        wait_for "$2.err" "tracing DNS"
        ;;
    count)
        "$DNSLENS" count --by process --json -v --no-kubernetes >"$2.count" 2>"$2.err" &
        OBS_PID=$!
        wait_for "$2.err" "tracing DNS"
        ;;
    agent)
        # Metrics only: --sample 0 writes no event lines (alerts still go, to /dev/null);
        # /metrics on a port of this run's own.
        "$DNSLENS" agent --no-kubernetes --sample 0 --output /dev/null \
            --metrics-address "127.0.0.1:$((19000 + $$ % 1000))" >/dev/null 2>"$2.err" &
        OBS_PID=$!
        wait_for "$2.err" "tracing DNS"
        ;;
    floor | floor-client)
        local side=()
        [ "$1" = floor-client ] && side=(--client-side)
        "$DRAIN" "${side[@]}" 2>"$2.err" &
        OBS_PID=$!
        wait_for "$2.err" "drain: attached"
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

# dnsperf in the client namespace against the server, report to $1, more flags after it.
perf() {
    local report=$1
    shift
    "${CLIENT_ON[@]}" ip netns exec "$NS_C" dnsperf -s "$SRV" -d "$OUT/names.txt" -c 8 -T 1 \
        -q 2000 -t 2 "$@" >"$report" 2>&1
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

# Messages the hooks saw, from a dnslens or drain stderr $1: those written to the ring buffer
# and the server side kept in the kernel, from the verbose report, or the agent's one line
# when nothing was lost.
events_of() {
    awk '/kernel: [0-9]+ events/ || /^dnslens: [0-9]+ messages? captured/ {
        n = $0; sub(/.*(kernel|dnslens): /, "", n); n += 0
        if (match($0, /[0-9]+ server-side messages kept/)) n += substr($0, RSTART, RLENGTH)
        print n; exit
    }' "$1"
}

# The namespaces, the names dnsperf asks (1,000 under bench.test, 3/4 A and 1/4 AAAA), and the
# machine's description.
bench_setup() {
    setup_net
    awk 'BEGIN {for (i = 0; i < 1000; i++) printf "q%d.bench.test %s\n", i, (i % 4 == 3) ? "AAAA" : "A"}' >"$OUT/names.txt"
    {
        echo "machine: $(nproc) cpus, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
        echo "dnslens: $DNSLENS ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null))"
        echo "results in $OUT"
        # Left at 1, every BPF program on the host (dnslens's and others') pays two clock reads a run.
        [ "$(cat /proc/sys/kernel/bpf_stats_enabled 2>/dev/null)" = 1 ] &&
            echo "WARNING: kernel.bpf_stats_enabled is 1: hooks cost more than they would (sysctl -w kernel.bpf_stats_enabled=0)"
    } | tee "$OUT/machine.txt"
}
