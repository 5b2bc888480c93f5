#!/usr/bin/env bash
# After `cargo test`: nothing the module printed in the whole run (every log
# line and every fs_cli reply, recorded by the harness) contains any password
# a test configured. The harness also checks this at every unload; this is
# the whole-run view, across test processes.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/tmp/module-output
shopt -s nullglob
logs=("$dir"/*.log)
secrets=("$dir"/*.secrets)
if ((${#logs[@]} == 0 || ${#secrets[@]} == 0)); then
    echo "no-secrets: nothing recorded in $dir: run cargo test first" >&2
    exit 1
fi
sort -u "${secrets[@]}" > "$dir/all-secrets.txt"
lines=$(cat "${logs[@]}" | wc -l)
if grep -F -f "$dir/all-secrets.txt" "${logs[@]}"; then
    echo "no-secrets: the lines above contain a configured password" >&2
    exit 1
fi
echo "no-secrets: $lines lines of module output from ${#logs[@]} test processes contain none of the $(wc -l < "$dir/all-secrets.txt") passwords the tests configured"
