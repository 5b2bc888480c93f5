#!/usr/bin/env bash
# Tests `make install` / `make uninstall` under temporary DESTDIRs: default
# (fallback) locations, pkg-config locations, MODDIR/CONFDIR overrides, and
# that an existing (edited) cc_events.conf.xml is never overwritten.
# Nothing is written outside the temporary directory (and cargo's target dir).
#
# Usage: tests/source-install.sh        (honours CARGO_TARGET_DIR)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SAMPLE=conf/autoload_configs/cc_events.conf.xml

# The caller's environment must not choose the directories for us.
unset MODDIR CONFDIR DESTDIR MAKEFLAGS MFLAGS

# shellcheck source=tests/tap.sh
. "$ROOT/tests/tap.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cc-events-source-install.XXXXXX")
EMPTY_PC="$WORK/empty-pkgconfig"
mkdir -p "$EMPTY_PC"
# The freeswitch.pc of an installed FreeSWITCH when FREESWITCH_PREFIX names one,
# else one written here with the same variables, so the pkg-config path of the
# Makefile is tested on every machine.
FS_PC="${FREESWITCH_PREFIX:-/nonexistent}/lib/pkgconfig/freeswitch.pc"
if [[ ! -f "$FS_PC" ]]; then
    mkdir -p "$WORK/fake-pkgconfig"
    FS_PC="$WORK/fake-pkgconfig/freeswitch.pc"
    cat > "$FS_PC" <<'PC'
prefix=/opt/fakefs
modulesdir=/opt/fakefs/mod
confdir=/opt/fakefs/conf

Name: freeswitch
Version: 1.10.12-release
Description: stand-in for an installed FreeSWITCH (tests/source-install.sh)
Cflags: -I${prefix}/include/freeswitch
PC
    echo "# pkg-config: using a stand-in freeswitch.pc (set FREESWITCH_PREFIX to use an installed one)"
fi
cleanup() {
    local rc=$?
    abort_summary "$rc" || rc=$?
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_make <log> <make args...>: runs make, keeping its output in <log>;
# prints the log if make fails.
run_make() {
    local log=$1; shift
    if make --no-print-directory -C "$ROOT" "$@" >"$log" 2>&1; then
        return 0
    fi
    echo "# make $* failed:" >&2
    sed 's/^/#   /' "$log" >&2
    return 1
}
# make with pkg-config unable to find freeswitch.pc (forces the fallback dirs)
make_nopc() {
    PKG_CONFIG_PATH="$EMPTY_PC" PKG_CONFIG_LIBDIR="$EMPTY_PC" run_make "$@"
}

# make with pkg-config seeing only the .pc files in <dir> (plus its defaults)
make_pc() {
    local dir=$1; shift
    (unset PKG_CONFIG_LIBDIR; PKG_CONFIG_PATH="$dir" run_make "$@")
}

mode_of() { stat -c %a "$1"; }
is_stripped() {
    local sections
    sections=$(readelf -S --wide "$1") || return 1
    ! grep -qE '\.symtab|\.debug_' <<<"$sections"
}
# files_are <dir> <expected relative paths...>: exactly these regular files.
files_are() {
    local dir=$1; shift
    local actual expected
    actual=$(cd "$dir" && find . -type f | sed 's|^\./||' | sort)
    expected=$(printf '%s\n' "$@" | sort)
    if [[ "$actual" == "$expected" ]]; then return 0; fi
    echo "# expected files: $(tr '\n' ' ' <<<"$expected")" >&2
    echo "# actual files:   $(tr '\n' ' ' <<<"$actual")" >&2
    return 1
}
log_says() { grep -q -- "$2" "$1"; }

MOD_REL=usr/lib/freeswitch/mod/mod_cc_events.so
CONF_REL=etc/freeswitch/autoload_configs/cc_events.conf.xml

# --- build -------------------------------------------------------------------
check "make build" run_make "$WORK/build.log" build

# --- 1. fallback locations (pkg-config finds no freeswitch.pc) ---------------
D1="$WORK/fallback"
check "fallback: make install DESTDIR (pkg-config finds nothing)" make_nopc "$WORK/i1.log" install DESTDIR="$D1"
check "fallback: module at /usr/lib/freeswitch/mod/mod_cc_events.so" test -f "$D1/$MOD_REL"
check "fallback: module mode 0755" test "$(mode_of "$D1/$MOD_REL" 2>/dev/null)" = 755
check "fallback: module is stripped (no .symtab / .debug_*)" is_stripped "$D1/$MOD_REL"
check "fallback: config at /etc/freeswitch/autoload_configs/cc_events.conf.xml" test -f "$D1/$CONF_REL"
check "fallback: config mode 0644" test "$(mode_of "$D1/$CONF_REL" 2>/dev/null)" = 644
check "fallback: config is the sample config" cmp -s "$SAMPLE" "$D1/$CONF_REL"
check "fallback: nothing else installed" files_are "$D1" "$MOD_REL" "$CONF_REL"

# --- 2. reinstall keeps an edited config -------------------------------------
echo "<!-- edited by source-install test -->" >>"$D1/$CONF_REL"
cp "$D1/$CONF_REL" "$WORK/edited.xml"
check "reinstall: make install again" make_nopc "$WORK/i2.log" install DESTDIR="$D1"
check "reinstall: edited config not overwritten" cmp -s "$WORK/edited.xml" "$D1/$CONF_REL"
check "reinstall: says it kept the existing config" log_says "$WORK/i2.log" "kept existing"
check "reinstall: module still installed" test -f "$D1/$MOD_REL"

# --- 3. uninstall removes the module, keeps the config -----------------------
check "uninstall: make uninstall" make_nopc "$WORK/u1.log" uninstall DESTDIR="$D1"
check "uninstall: module removed" test ! -e "$D1/$MOD_REL"
check "uninstall: config left in place, still edited" cmp -s "$WORK/edited.xml" "$D1/$CONF_REL"
check "uninstall: says it left the config" log_says "$WORK/u1.log" "left .*cc_events.conf.xml in place"

# --- 4. a config that exists before the first install is not overwritten -----
D2="$WORK/preexisting"
mkdir -p "$(dirname "$D2/$CONF_REL")"
printf '%s\n' '<configuration name="cc_events.conf"><settings>' \
    '<param name="host" value="redis.example"/></settings></configuration>' >"$D2/$CONF_REL"
cp "$D2/$CONF_REL" "$WORK/pre.xml"
check "pre-existing config: make install" make_nopc "$WORK/i3.log" install DESTDIR="$D2"
check "pre-existing config: not overwritten" cmp -s "$WORK/pre.xml" "$D2/$CONF_REL"
check "pre-existing config: says it kept the existing config" log_says "$WORK/i3.log" "kept existing"
check "pre-existing config: module installed" test -f "$D2/$MOD_REL"

# --- 5. MODDIR / CONFDIR overrides -------------------------------------------
D3="$WORK/override"
check "override: make install MODDIR=/opt/fs/mod CONFDIR=/opt/fs/conf" \
    make_nopc "$WORK/i4.log" install DESTDIR="$D3" MODDIR=/opt/fs/mod CONFDIR=/opt/fs/conf
check "override: module at MODDIR, mode 0755" test "$(mode_of "$D3/opt/fs/mod/mod_cc_events.so" 2>/dev/null)" = 755
check "override: config at CONFDIR/autoload_configs, mode 0644" \
    test "$(mode_of "$D3/opt/fs/conf/autoload_configs/cc_events.conf.xml" 2>/dev/null)" = 644
check "override: nothing at the default locations" \
    files_are "$D3" opt/fs/mod/mod_cc_events.so opt/fs/conf/autoload_configs/cc_events.conf.xml
# Overrides also win over what pkg-config would say.
if [[ -f "$FS_PC" ]]; then
    D3b="$WORK/override-pc"
    check "override: MODDIR/CONFDIR beat pkg-config" \
        make_pc "$(dirname "$FS_PC")" "$WORK/i4b.log" install \
        DESTDIR="$D3b" MODDIR=/opt/fs/mod CONFDIR=/opt/fs/conf
    check "override: files where MODDIR/CONFDIR say despite pkg-config" \
        files_are "$D3b" opt/fs/mod/mod_cc_events.so opt/fs/conf/autoload_configs/cc_events.conf.xml
fi
check "override: make uninstall with the same MODDIR/CONFDIR" \
    make_nopc "$WORK/u2.log" uninstall DESTDIR="$D3" MODDIR=/opt/fs/mod CONFDIR=/opt/fs/conf
check "override: module removed, config kept" \
    files_are "$D3" opt/fs/conf/autoload_configs/cc_events.conf.xml

# --- 6. locations from pkg-config freeswitch ----------------------------------
if [[ -f "$FS_PC" ]]; then
    pcdir=$(dirname "$FS_PC")
    moddir=$(env -u PKG_CONFIG_LIBDIR PKG_CONFIG_PATH="$pcdir" pkg-config --variable=modulesdir freeswitch)
    confdir=$(env -u PKG_CONFIG_LIBDIR PKG_CONFIG_PATH="$pcdir" pkg-config --variable=confdir freeswitch)
    D4="$WORK/pkgconfig"
    check "pkg-config: make install with PKG_CONFIG_PATH=$pcdir" \
        make_pc "$pcdir" "$WORK/i5.log" install DESTDIR="$D4"
    check "pkg-config: module at modulesdir ($moddir), mode 0755" \
        test "$(mode_of "$D4$moddir/mod_cc_events.so" 2>/dev/null)" = 755
    check "pkg-config: config at confdir ($confdir)/autoload_configs, mode 0644" \
        test "$(mode_of "$D4$confdir/autoload_configs/cc_events.conf.xml" 2>/dev/null)" = 644
    check "pkg-config: nothing at the fallback locations" \
        files_are "$D4" "${moddir#/}/mod_cc_events.so" "${confdir#/}/autoload_configs/cc_events.conf.xml"
    check "pkg-config: make uninstall" \
        make_pc "$pcdir" "$WORK/u3.log" uninstall DESTDIR="$D4"
    check "pkg-config: module removed, config kept" \
        files_are "$D4" "${confdir#/}/autoload_configs/cc_events.conf.xml"
    # The same, with PKG_CONFIG_PATH given as a make argument instead.
    D5="$WORK/pkgconfig-arg"
    check "pkg-config: make install PKG_CONFIG_PATH=$pcdir (make argument)" \
        make_nopc "$WORK/i6.log" install DESTDIR="$D5" PKG_CONFIG_PATH="$pcdir"
    check "pkg-config: make argument: files at modulesdir and confdir" \
        files_are "$D5" "${moddir#/}/mod_cc_events.so" "${confdir#/}/autoload_configs/cc_events.conf.xml"
else
    echo "skip - pkg-config locations: $FS_PC not found (no installed FreeSWITCH to test against)"
fi

summary
[[ $failed -eq 0 ]]
