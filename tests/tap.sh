# Shared by the shell tests: `ok - ...` / `not ok - ...` lines and a closing
# `N passed, M failed` line. Source it; it defines functions and counters only.
passed=0
failed=0
ok()     { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
# check <description> <command...>: runs the command, records ok / not ok.
check() {
    local what=$1; shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}
summary_done=0
summary() { summary_done=1; echo "$passed passed, $failed failed"; }
# Stops the test early (the EXIT trap still cleans up).
bail() { not_ok "$*"; summary; exit 1; }
# For an EXIT trap: a test that stopped before its summary still prints one
# and fails. Call first thing in the trap with the trap's $?; returns the status to exit with.
abort_summary() {
    local rc=$1
    if [[ $summary_done -eq 0 ]]; then
        not_ok "test aborted (exit status $rc)"
        summary
        [[ $rc -ne 0 ]] || rc=1
    fi
    return "$rc"
}
