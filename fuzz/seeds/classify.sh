#!/usr/bin/env bash
# Groups the findings under fuzz/artifacts/<target>/ by where they panicked:
#   fuzz/seeds/classify.sh BIN_DIR [TARGET...]
# BIN_DIR is where the target binaries are (target/debug for `scripts/fuzz.sh --stable`).
set -uo pipefail
bin_dir=$1
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(ls fuzz/artifacts); fi
for t in "${targets[@]}"; do
    for a in fuzz/artifacts/"$t"/*; do
        [ -f "$a" ] || continue
        case $(basename "$a") in
        timeout-*) echo "$t timeout" ; continue ;;
        oom-*) echo "$t oom"; continue ;;
        esac
        out=$(timeout 20 "$bin_dir/$t" "$a" 2>&1 | tr -d '\0')
        loc=$(grep -a -o 'panicked at [^ ]*' <<<"$out" | head -n 1)
        [ -n "$loc" ] || loc=$(grep -a -m1 -o 'ERROR: [A-Za-z]*: [a-z -]*' <<<"$out" || echo "no longer reproduces")
        echo "$t ${loc/$root\//}"
    done
done | sort | uniq -c
