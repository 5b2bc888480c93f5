#!/usr/bin/env bash
# Runs the load → traffic → `cc_events status` → unload cycles of
# tests/valgrind_cycle.rs (20 cycles, every other load from a thread that then
# exits) under valgrind memcheck, and requires no error at all: no definite
# leak, no invalid read or write, no use of uninitialised memory.
#
# Suppressions: tests/valgrind.supp, for what is outside the module only. None
# of them may name the module, and when any error was suppressed the run is
# repeated without them to show that none of those errors has a frame in the
# module (its code and the Rust std it carries are in libmod_cc_events.so).
#
# Usage: tests/valgrind.sh        (needs valgrind and redis-server; honours CARGO_TARGET_DIR)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TEST=load_traffic_status_unload_cycles
SUPP=tests/valgrind.supp
# Distinct from the test binary's own failure status (101).
VG_ERRORS=99

# shellcheck source=tests/tap.sh
. "$ROOT/tests/tap.sh"
on_exit() { local rc=$?; abort_summary "$rc" || rc=$?; exit "$rc"; }
trap on_exit EXIT

command -v valgrind >/dev/null || bail "valgrind is not installed (Debian: apt-get install valgrind)"
command -v redis-server >/dev/null || bail "redis-server is not installed (Debian: apt-get install redis-server)"

# A frame of the module: its own functions, or anything in its .so by name.
MODULE_FRAME='mod_cc_events::|libmod_cc_events\.so'
supp_names_no_module() { ! grep -v '^[[:space:]]*#' "$SUPP" | grep -q 'mod_cc_events'; }
check "$SUPP names nothing of the module" supp_names_no_module

# The test binary, built as `cargo test` builds it (debug, with debug info for readable stacks).
bin=$(cargo test --test valgrind_cycle --no-run --message-format=json \
    | grep -o '"executable":"[^"]*valgrind_cycle[^"]*"' | cut -d'"' -f4 | tail -n 1)
[[ -x "$bin" ]] || bail "cargo did not build the valgrind_cycle test binary"
logdir=${bin%/deps/*}
log=$logdir/valgrind-memcheck.log

# --keep-debuginfo: the module is dlclose()d every cycle; its frames must keep their names.
vg=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite
    --errors-for-leak-kinds=definite --error-exitcode=$VG_ERRORS
    --keep-debuginfo=yes --num-callers=40)
run() { "${vg[@]}" "$@" "$bin" --ignored --exact "$TEST" --test-threads=1 --nocapture; }

echo "# valgrind memcheck on $(basename "$bin") $TEST; log: $log"
start=$SECONDS
rc=0
run --suppressions="$SUPP" -s --log-file="$log" >"$logdir/valgrind-test-output.log" 2>&1 || rc=$?
echo "# $((SECONDS - start)) s under valgrind"
grep -E '^cycle [0-9]+:' "$logdir/valgrind-test-output.log" | tail -n 2 | sed 's/^/# /'
grep -E '^==[0-9]+== .*(ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|suppressed:)' "$log" | sed 's/^==[0-9]*== */# /' | awk '!seen[$0]++'

out=$logdir/valgrind-test-output.log
if [[ $rc -ne 0 && $rc -ne $VG_ERRORS ]]; then
    cat "$out"
fi
ran_to_the_end() { [[ $rc -eq 0 || $rc -eq $VG_ERRORS ]] && grep -q '^test result: ok\. 1 passed' "$out"; }
check "the cycles ran to the end under valgrind (exit status $rc)" ran_to_the_end
errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -n 1)
check "valgrind reports 0 errors (got ${errors:-no summary})" test "${errors:-x}" = 0
no_definite_leak() {
    grep -q 'definitely lost: 0 bytes in 0 blocks' "$log" || grep -q 'All heap blocks were freed' "$log"
}
check "no definite leak" no_definite_leak
invalid=$(grep -Ec 'Invalid (read|write|free)|Mismatched free|uninitialised' "$log" || true)
check "no invalid read, write or free, no use of uninitialised values (found $invalid)" test "$invalid" = 0
if [[ $rc -eq $VG_ERRORS || "${errors:-x}" != 0 ]]; then
    # Only errors and definite leaks are shown (--show-leak-kinds=definite).
    echo "# $log:"
    head -n 2000 "$log"
fi

# Suppressed errors must all be outside the module: look at them unsuppressed.
suppressed=$(sed -n 's/.*ERROR SUMMARY: .*(suppressed: \([0-9]*\) from.*/\1/p' "$log" | tail -n 1)
if [[ "${suppressed:-0}" != 0 ]]; then
    echo "# $suppressed errors suppressed; used suppressions:"
    grep 'used_suppression' "$log" | sed 's/^--[0-9]*-- */# /'
    raw=$logdir/valgrind-memcheck-unsuppressed.log
    run --log-file="$raw" >/dev/null 2>&1 || true
    # Valgrind separates its reports with an empty `==pid== ` line; with
    # --show-leak-kinds=definite every report with a stack is an error.
    blocks_in_module() {
        awk -v re="$MODULE_FRAME" '
            /^==[0-9]+== $/ { if (block ~ re) printf "%s==\n", block; block = ""; next }
            { block = block $0 "\n" }' "$raw"
    }
    in_module=$(blocks_in_module | grep -c '^==$' || true)
    check "no suppressed error has a frame in the module (found $in_module; log: $raw)" test "$in_module" = 0
    [[ $in_module -eq 0 ]] || blocks_in_module | head -n 400
else
    ok "nothing was suppressed"
fi

echo "# $((SECONDS - start)) s in all"
summary
[[ $failed -eq 0 ]]
