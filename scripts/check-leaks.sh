#!/usr/bin/env bash
# Fails when tests left peapod mounts, cgroups, processes or registries on the machine.
set -u
fail=0
m=$(grep -E 'peapod' /proc/self/mountinfo || true)
[ -n "$m" ] && { echo "leaked mounts:"; echo "$m"; fail=1; }
c=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -type d -path '*peapod/*' 2>/dev/null || true)
[ -n "$c" ] && { echo "leaked cgroups:"; echo "$c"; fail=1; }
p=$(ps -eo pid,args | grep -E '[p]eapod (shim|up)|[d]ocker-registry serve' || true)
[ -n "$p" ] && { echo "leaked processes:"; echo "$p"; fail=1; }
[ "$fail" = 0 ] && echo "no leaks"
exit "$fail"
