#!/usr/bin/env bash
# The wallboard demo: installs what is missing (as scripts/demo.sh does),
# then starts a redis-server, loads the module into the FreeSWITCH host
# harness with the state mirror and a stream, serves the wallboard, and
# replays the recorded mod_callcenter scenario at a human pace, in a loop.
# Open the URL it prints; Ctrl-C stops everything.
#
#   CC_WALLBOARD_LISTEN=0.0.0.0:8080 CC_WALLBOARD_TOKEN=... scripts/wallboard-demo.sh
#                                  (to open it from another machine: with a token)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release -p cc-wallboard --example wallboard-demo
