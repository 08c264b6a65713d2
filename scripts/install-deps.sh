#!/usr/bin/env bash
# Installs what a fresh Debian 12 / Ubuntu machine needs to build dnslens and run its tests:
# the BPF toolchain (clang, llvm, libbpf headers, bpftool), and for the end-to-end tests a DNS
# server (dnsmasq-base, as a program: no service is started), real resolvers (dig, kdig, Go,
# musl-gcc, Python, Node), iproute2 for the network namespaces and tmux to drive the live view;
# Debian's prometheus package brings promtool, to check the PromQL that deploy/ ships and the
# agent's exposition, and the server that scrapes the agent in its test (its own service, which
# systemd starts where it runs, is not used).
#
# Idempotent: when every tool is already there it returns at once, without apt-get update.
# Needs root (or sudo). The Rust toolchain (cargo, rustfmt, clippy) is expected to be installed.
set -euo pipefail

# command-or-file to check  =>  package that provides it
checks=(
  "cc build-essential"
  "make build-essential"
  "pkg-config pkg-config"
  "clang clang"
  "llc llvm"
  "llvm-strip llvm"
  "/usr/include/bpf/libbpf.h libbpf-dev"
  "bpftool bpftool"
  "ip iproute2"
  "dnsmasq dnsmasq-base"
  "dig bind9-dnsutils"
  "kdig knot-dnsutils"
  "go golang-go"
  "musl-gcc musl-tools"
  "python3 python3"
  "node nodejs"
  "getent libc-bin"
  "tmux tmux"             # drives `dnslens top` as a terminal would (tests/top.rs)
  "promtool prometheus"   # PromQL of deploy/grafana and deploy/prometheus (tests/deploy.rs)
  "prometheus prometheus" # the server that scrapes the agent in tests/agent.rs
  "tshark tshark"         # reads `trace --pcapng` files back (tests/pcapng.rs)
)
# Not packaged under this name everywhere (Ubuntu ships bpftool in linux-tools): missing is a
# warning, not a failure.
optional="bpftool"

have() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for entry in "${checks[@]}"; do
  read -r what pkg <<<"$entry"
  if ! have "$what"; then
    case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all present"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
# Given to apt-get by name: sudo does not pass the environment on.
noninteractive=(env DEBIAN_FRONTEND=noninteractive)
# tshark's package asks whether non-root users may capture: no, and no question.
echo "wireshark-common wireshark-common/install-setuid boolean false" |
  "${sudo[@]}" debconf-set-selections
"${sudo[@]}" apt-get update -q
required=()
for pkg in "${missing[@]}"; do
  if [[ " $optional " == *" $pkg "* ]] && ! apt-cache show "$pkg" >/dev/null 2>&1; then
    echo "install-deps: warning: no package $pkg here; skipping it" >&2
    continue
  fi
  required+=("$pkg")
done
if [ "${#required[@]}" -gt 0 ]; then
  "${sudo[@]}" "${noninteractive[@]}" apt-get install -y -q --no-install-recommends "${required[@]}"
fi

for entry in "${checks[@]}"; do
  read -r what pkg <<<"$entry"
  if ! have "$what" && [[ " $optional " != *" $pkg "* ]]; then
    echo "install-deps: $what still missing after installing $pkg" >&2
    exit 1
  fi
done
echo "install-deps: done"
