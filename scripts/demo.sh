#!/usr/bin/env bash
# Quick start: install what is missing, build the module, and run the demo:
# a real redis-server, the module loaded into the FreeSWITCH host harness, a
# recorded mod_callcenter scenario replayed, and what a subscriber receives.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release --example demo
