#!/usr/bin/env bash
# The hostile-input property (tests/hostile_input.rs) at full strength: 1,000,000
# generated events, each with the default settings and generated ones, through
# scan -> capture -> the seed and envelope formats, in a release build.
# Prints the case count, the outcome tally and the time taken.
# CC_EVENTS_PROPTEST_CASES=N runs N cases instead.
set -euo pipefail
cd "$(dirname "$0")/.."

cases=${CC_EVENTS_PROPTEST_CASES:-1000000}
echo "property test: building tests/hostile_input.rs (release)"
build_start=$(date +%s)
cargo test --release --test hostile_input --no-run
build_s=$(($(date +%s) - build_start))

echo "property test: $cases cases"
run_start=$(date +%s)
CC_EVENTS_PROPTEST_CASES=$cases cargo test --release --test hostile_input -- --nocapture
run_s=$(($(date +%s) - run_start))
echo "property test: $cases cases passed in ${run_s} s (build ${build_s} s)"
