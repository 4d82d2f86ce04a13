#!/usr/bin/env bash
# Fails when tests left peapod mounts, cgroups, processes, loop devices or registries on the
# machine.
#
#   check-leaks.sh [--shared] [--before FILE] [--record FILE]
#
# --shared         also the node-wide parent cgroup and default bridge (when the caller made them)
# --record FILE    write what is there now to FILE and exit 0 (taken before a test run)
# --before FILE    what FILE lists was there before the run: shown, but not counted as a leak
#                  of this run (a run that was killed earlier on the same machine leaves things
#                  only its own `peapod reset` could know of)
set -u
shared=0 before="" record=""
while [ $# -gt 0 ]; do
  case "$1" in
    --shared) shared=1 ;;
    --before) before="$2"; shift ;;
    --record) record="$2"; shift ;;
    *) echo "usage: $0 [--shared] [--before FILE] [--record FILE]" >&2; exit 2 ;;
  esac
  shift
done

# One line per finding: "<kind>: <what>".
findings() {
  grep -E 'peapod' /proc/self/mountinfo | sed 's/^/mount: /'
  # Pod cgroups sit in peapod/kubepods[/burstable|/besteffort]; `peapod reset` removes kubepods
  # and its tiers once no pod is left in them, so nothing below peapod/ may remain.
  find /sys/fs/cgroup -mindepth 2 -maxdepth 5 -type d -path '*peapod/*' 2>/dev/null | sed 's/^/cgroup: /'
  ps -eo pid,args | grep -E '[p]eapod (shim|up)|[d]ocker-registry serve' | sed 's/^ *[0-9]* /process: /'
  losetup -a 2>/dev/null | grep peapod | sed 's/^/loop device: /'
  if [ "$shared" = 1 ]; then
    ls -d /sys/fs/cgroup/*/peapod /sys/fs/cgroup/peapod 2>/dev/null | sed 's/^/parent cgroup: /'
    ip link show peapod0 >/dev/null 2>&1 && echo "bridge: peapod0"
  fi
  return 0
}

now=$(findings)
if [ -n "$record" ]; then
  printf '%s\n' "$now" | grep -v '^$' > "$record" || true
  exit 0
fi
old=""
if [ -n "$before" ] && [ -s "$before" ]; then
  old=$(grep -Fxf "$before" <<<"$now" || true)
  now=$(grep -vFxf "$before" <<<"$now" || true)
fi
if [ -n "$old" ]; then
  echo "there before this run (not counted):"
  printf '%s\n' "$old"
fi
if [ -n "$now" ]; then
  echo "leaked:"
  printf '%s\n' "$now"
  exit 1
fi
echo "no leaks"
