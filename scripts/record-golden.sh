#!/usr/bin/env bash
# Makes tests/golden/capture.bin: the raw ring-buffer records of a real capture, the
# input of the golden test (crates/detect/tests/golden.rs). Run once, as root, when the record
# layout changes; then regenerate the expected lines with `GOLDEN_BLESS=1 cargo test -p
# dnslens-detect --test golden` and read the diff.
#
# Everything happens in a network namespace made here: dnsmasq on its loopback is the server;
# dig, kdig, glibc (getent) and Python are the clients, some in a cgroup named as the kubelet's
# systemd driver names a pod's container, one on the host. Nothing leaves the namespace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "record-golden: needs root" >&2; exit 1; }

ns="dlgold$$"
uid="6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
container=$(printf 'ab%.0s' {1..32})
cg_root=/sys/fs/cgroup/unified
pod_slice="$cg_root/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid//-/_}.slice"
scope="$pod_slice/cri-containerd-$container.scope"
out=tests/golden/capture.bin
work=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rmdir "$scope" "$pod_slice" "$cg_root/kubepods.slice/kubepods-besteffort.slice" \
    "$cg_root/kubepods.slice" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "/etc/netns/$ns" "$work"
}
trap cleanup EXIT

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add dlgold0 type veth peer name dlgold1
ip -n "$ns" link set dlgold1 up
ip -n "$ns" addr add 10.77.0.1/24 dev dlgold0
ip -n "$ns" link set dlgold0 up
# The answers' addresses lead into the veth: a connect to one leaves a SYN in the namespace.
ip -n "$ns" route add 10.9.9.0/24 dev dlgold0
mkdir -p "/etc/netns/$ns"
printf 'nameserver 127.0.0.1\noptions attempts:1 timeout:1\n' > "/etc/netns/$ns/resolv.conf"
mkdir -p "$scope"
netns_ino=$(ip netns exec "$ns" stat -L -c %i /proc/self/ns/net)

ip netns exec "$ns" dnsmasq --keep-in-foreground --no-daemon --no-resolv --no-hosts \
  --listen-address=127.0.0.1 --bind-interfaces --port=53 --local=/test/ \
  --host-record=web.demo.test,10.9.9.9,fd00::9 --cname=www.demo.test,web.demo.test \
  --txt-record=txt.demo.test,"v=spf1 -all" --pid-file= --log-facility=- 2>"$work/dnsmasq.log" &
pids+=($!)
ip netns exec "$ns" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.1", 8080)); s.listen(4)
while True:
    c, _ = s.accept(); c.close()
' &
pids+=($!)

cargo build --release -p dnslens-probe --example record
./target/release/examples/record "$work/capture.bin" 10 "$netns_ino" 53 > "$work/record.log" &
recorder=$!
until grep -q recording "$work/record.log" 2>/dev/null; do sleep 0.2; done
sleep 0.5

# The pod's clients, run by a shell that joined the container's cgroup before entering the
# namespace (`ip netns exec` mounts a sysfs of its own, without the cgroup hierarchies).
cat > "$work/clients.sh" <<EOS
dig @127.0.0.1 +tries=1 www.demo.test A
dig @127.0.0.1 +tries=1 web.demo.test AAAA
dig @127.0.0.1 +tries=1 nope.test A
dig @127.0.0.1 +tries=1 +tcp txt.demo.test TXT
kdig @127.0.0.1 web.demo.test A
getent ahosts web.demo.test
dig @127.0.0.1 +tries=1 'we"ird\\\\name\\007.demo.test' A
dig @127.0.0.2 +tries=1 +timeout=1 lost.demo.test A
python3 -c 'import socket; socket.create_connection(("10.77.0.1", 8080)).close()'
python3 -c 'import socket
try: socket.create_connection(("10.9.9.9", 443), timeout=0.3)
except OSError: pass'
cp "\$(command -v dig)" /tmp/$ns-dig && /tmp/$ns-dig @127.0.0.1 +tries=1 web.demo.test A
rm -f /tmp/$ns-dig
EOS
bash -c "echo \$\$ > '$scope/cgroup.procs' && exec ip netns exec '$ns' bash '$work/clients.sh'" \
  > "$work/clients.log" 2>&1 || true
# And one host process.
ip netns exec "$ns" dig @127.0.0.1 +tries=1 web.demo.test A >> "$work/clients.log" 2>&1

wait "$recorder"
cat "$work/record.log"
mkdir -p "$(dirname "$out")"
cp "$work/capture.bin" "$out"
echo "record-golden: wrote $out ($(stat -c %s "$out") bytes)"
