#!/usr/bin/env bash
# Removes what an end-to-end test run left behind when it was killed before its cleanup could
# run (SIGKILL, a CI timeout): network namespaces, /etc/netns entries and tmux servers named
# dlt<pid>x<n>... whose test process <pid> is gone, and the empty pod cgroup directories the tests
# recorded in /run/dnslens-e2e/cgroups. Anything still in use is left alone.
set -euo pipefail

alive() { [ -d "/proc/$1" ]; }

for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
  if [[ $ns =~ ^dlt([0-9]+)x[0-9]+- ]] && ! alive "${BASH_REMATCH[1]}"; then
    echo "clean: netns $ns"
    ip netns del "$ns" || true
  fi
done
if [ -d /etc/netns ]; then
  for dir in /etc/netns/dlt*; do
    [ -e "$dir" ] || continue
    name=$(basename "$dir")
    if [[ $name =~ ^dlt([0-9]+)x[0-9]+- ]] && ! alive "${BASH_REMATCH[1]}"; then
      echo "clean: $dir"
      rm -rf -- "$dir"
    fi
  done
  rmdir /etc/netns 2>/dev/null || true
fi

# tmux servers of the live-view test (`tmux -L dlt<pid>x<n>`), with the dnslens they run.
for sock in "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)"/dlt*; do
  [ -S "$sock" ] || continue
  name=$(basename "$sock")
  if [[ $name =~ ^dlt([0-9]+)x[0-9]+ ]] && ! alive "${BASH_REMATCH[1]}"; then
    echo "clean: tmux server $name"
    tmux -L "$name" kill-server 2>/dev/null || true
    rm -f -- "$sock"
  fi
done

state=/run/dnslens-e2e
if [ -s "$state/cgroups" ]; then
  # Under the tests' own lock; deepest first, rmdir only removes empty directories.
  (
    flock 9
    left=$(mktemp)
    awk '{ print length($0) "\t" $0 }' "$state/cgroups" | sort -rn | cut -f2- |
      while IFS= read -r dir; do
        if [ -d "$dir" ] && ! rmdir "$dir" 2>/dev/null; then echo "$dir" >>"$left"; else echo "clean: $dir"; fi
      done
    mv "$left" "$state/cgroups"
  ) 9>"$state/lock"
fi
