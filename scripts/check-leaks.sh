#!/usr/bin/env bash
# Fails when tests left peapod mounts, cgroups, processes, loop devices or registries on the
# machine.
set -u
fail=0
m=$(grep -E 'peapod' /proc/self/mountinfo || true)
[ -n "$m" ] && { echo "leaked mounts:"; echo "$m"; fail=1; }
# Pod cgroups sit in peapod/kubepods[/burstable|/besteffort]; `peapod reset` removes kubepods and
# its tiers once no pod is left in them, so nothing below peapod/ may remain.
c=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 5 -type d -path '*peapod/*' 2>/dev/null || true)
[ -n "$c" ] && { echo "leaked cgroups:"; echo "$c"; fail=1; }
p=$(ps -eo pid,args | grep -E '[p]eapod (shim|up)|[d]ocker-registry serve' || true)
[ -n "$p" ] && { echo "leaked processes:"; echo "$p"; fail=1; }
l=$(losetup -a 2>/dev/null | grep peapod || true)
[ -n "$l" ] && { echo "leaked loop devices:"; echo "$l"; fail=1; }
# --shared: also the node-wide parent cgroup and default bridge (when the caller made them).
if [ "${1:-}" = --shared ]; then
  s=$(ls -d /sys/fs/cgroup/*/peapod /sys/fs/cgroup/peapod 2>/dev/null || true)
  [ -n "$s" ] && { echo "leaked parent cgroups:"; echo "$s"; fail=1; }
  ip link show peapod0 >/dev/null 2>&1 && { echo "leaked bridge peapod0"; fail=1; }
fi
[ "$fail" = 0 ] && echo "no leaks"
exit "$fail"
