#!/usr/bin/env bash
# Builds the Debian package with the documented command (`cargo deb --strip`),
# inspects it, then installs, removes and purges it on this machine.
#
# Needs root (or sudo) for dpkg. On a machine without FreeSWITCH the install
# is forced past the missing `freeswitch` dependency (dpkg --force-depends).
# The package is purged on exit, whatever happens.
#
# Usage: tests/packaging.sh        (honours CARGO_TARGET_DIR)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PKG=freeswitch-mod-cc-events
SO_PATH=/usr/lib/freeswitch/mod/mod_cc_events.so
CONF_PATH=/etc/freeswitch/autoload_configs/cc_events.conf.xml
DOC_DIR=/usr/share/doc/$PKG
SAMPLE=conf/autoload_configs/cc_events.conf.xml
MARKER="<!-- edited by mod_cc_events packaging test -->"

# shellcheck source=tests/tap.sh
. "$ROOT/tests/tap.sh"

# --- root / sudo -------------------------------------------------------------
if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
    echo "# not root: using sudo for dpkg"
else
    bail "root: this test installs a package; run it as root or install sudo"
fi
as_root() { "${SUDO[@]}" "$@"; }

pkg_status() { dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null || true; }
# Installed, or removed with its conffiles left: anything dpkg still knows.
pkg_known() {
    local s; s=$(pkg_status)
    [[ -n "$s" && "$s" != *not-installed* ]]
}

pkg_unknown() { ! pkg_known; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cc-events-packaging.XXXXXX")
we_installed=0
cleanup() {
    local rc=$?
    abort_summary "$rc" || rc=$?
    if [[ $we_installed -eq 1 ]] && pkg_known; then
        echo "# cleanup: purging $PKG"
        as_root dpkg -P "$PKG" >/dev/null 2>&1 || echo "# cleanup: dpkg -P $PKG failed" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- preflight: never touch a real installation -------------------------------
if pkg_known; then
    bail "preflight: $PKG is already known to dpkg ($(pkg_status)); purge it first (dpkg -P $PKG)"
fi
for f in "$SO_PATH" "$CONF_PATH"; do
    if [[ -e "$f" ]]; then
        bail "preflight: $f exists (a source install?); move it away first, this test would replace and then delete it"
    fi
done

# --- build -------------------------------------------------------------------
VERSION=$(awk -F'"' '/^\[/ { in_pkg = ($0 == "[package]") } in_pkg && /^version *=/ { print $2; exit }' Cargo.toml)
ARCH=$(dpkg --print-architecture)
[[ -n "$VERSION" ]] || bail "read the version from Cargo.toml"
echo "# crate version $VERSION, architecture $ARCH"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "# cargo-deb not found: cargo install cargo-deb --locked"
    cargo install cargo-deb --locked >"$WORK/cargo-install.log" 2>&1 || {
        sed 's/^/#   /' "$WORK/cargo-install.log" >&2
        bail "install cargo-deb"
    }
fi

# The documented build command.
if cargo deb --strip >"$WORK/build.out" 2>"$WORK/build.err"; then
    ok "build: cargo deb --strip"
else
    sed 's/^/#   /' "$WORK/build.err" >&2
    bail "build: cargo deb --strip"
fi
DEB=$(tail -n 1 "$WORK/build.out")
echo "# package: $DEB"
check "build: file is named ${PKG}_${VERSION}_${ARCH}.deb" test "$(basename "$DEB")" = "${PKG}_${VERSION}_${ARCH}.deb"
[[ -f "$DEB" ]] || bail "build: $DEB exists"

# --- inspect: contents ---------------------------------------------------------
CONTENTS=$(dpkg-deb -c "$DEB")
# has_entry <path> <mode regex>: dpkg-deb -c lists ./<path> with matching mode.
has_entry() {
    awk -v p=".$1" -v m="^($2)\$" '$6 == p && $1 ~ m { found = 1 } END { exit !found }' <<<"$CONTENTS"
}
check "contents: $SO_PATH, mode 0644 or 0755" has_entry "$SO_PATH" '-rw-r--r--|-rwxr-xr-x'
check "contents: $CONF_PATH, mode 0644" has_entry "$CONF_PATH" '-rw-r--r--'
for doc in README.md CHANGELOG.md copyright; do
    check "contents: $DOC_DIR/$doc" has_entry "$DOC_DIR/$doc" '-rw-r--r--'
done
unexpected=$(awk '$1 !~ /^d/ { print $6 }' <<<"$CONTENTS" | grep -vxF \
    -e ".$SO_PATH" -e ".$CONF_PATH" -e ".$DOC_DIR/README.md" \
    -e ".$DOC_DIR/CHANGELOG.md" -e ".$DOC_DIR/copyright" || true)
check "contents: no other files${unexpected:+ (found: $(tr '\n' ' ' <<<"$unexpected"))}" test -z "$unexpected"

# --- inspect: control ----------------------------------------------------------
INFO=$(dpkg-deb -I "$DEB")
echo "# dpkg-deb -I:"
sed 's/^/#   /' <<<"$INFO"
field() { dpkg-deb -f "$DEB" "$1"; }
CONFFILES=$(dpkg-deb -I "$DEB" conffiles 2>/dev/null || true)
check "control: Package is $PKG" test "$(field Package)" = "$PKG"
check "control: Version is $VERSION (Cargo.toml)" test "$(field Version)" = "$VERSION"
check "control: Architecture is $ARCH" test "$(field Architecture)" = "$ARCH"
check "control: Depends mentions freeswitch (>= 1.10)" grep -qF 'freeswitch (>= 1.10)' <<<"$(field Depends)"
if ! command -v dpkg-shlibdeps >/dev/null 2>&1; then
    echo "# dpkg-shlibdeps not found: cargo-deb cannot resolve \$auto (apt-get install dpkg-dev)"
fi
check "control: Depends has libc6 (from \$auto)" grep -qE '(^|, )libc6( |,|$)' <<<"$(field Depends)"
check "control: Suggests mentions redis-server" grep -qw 'redis-server' <<<"$(field Suggests)"
check "control: Section is comm" test "$(field Section)" = comm
check "control: Priority is optional" test "$(field Priority)" = optional
check "control: conffiles lists $CONF_PATH" grep -qxF "$CONF_PATH" <<<"$CONFFILES"
DESC=$(field Description)
check "control: description says to add <load module=\"mod_cc_events\"/>" grep -qF '<load module="mod_cc_events"/>' <<<"$DESC"
check "control: description says reloadxml and load mod_cc_events" \
    bash -c 'grep -qw reloadxml <<<"$1" && grep -qF "load mod_cc_events" <<<"$1"' _ "$DESC"

# --- inspect: the module is stripped --------------------------------------------
mkdir -p "$WORK/x"
dpkg-deb -x "$DEB" "$WORK/x"
SO_X="$WORK/x$SO_PATH"
SECTIONS=$(readelf -S --wide "$SO_X" 2>/dev/null || true)
check "module: is an ELF shared object (readelf -h: DYN)" \
    grep -q 'Type: *DYN' <<<"$(readelf -h "$SO_X" 2>/dev/null || true)"
check "module: stripped (readelf -S: no .symtab, no .debug_*)" \
    bash -c '[[ -n "$1" ]] && ! grep -qE "\.symtab|\.debug_" <<<"$1"' _ "$SECTIONS"
if command -v file >/dev/null 2>&1; then
    check "module: file(1) says stripped" grep -qE ', stripped$' <<<"$(file -b "$SO_X")"
else
    echo "skip - module: file(1) check (file is not installed; readelf check above suffices)"
fi
check "module: exports mod_cc_events_module_interface" \
    grep -q 'mod_cc_events_module_interface' <<<"$(readelf --dyn-syms --wide "$SO_X")"
check "package: conffile is the sample config" cmp -s "$SAMPLE" "$WORK/x$CONF_PATH"

# --- install -----------------------------------------------------------------
we_installed=1
if dpkg -s freeswitch >/dev/null 2>&1; then
    install_cmd=(dpkg -i "$DEB")
else
    echo "# NOTE: freeswitch is not installed (dpkg -s freeswitch fails); forcing past the missing freeswitch dependency with dpkg -i --force-depends"
    install_cmd=(dpkg -i --force-depends "$DEB")
fi
if as_root "${install_cmd[@]}" >"$WORK/install.log" 2>&1; then
    ok "install: ${install_cmd[*]}"
else
    sed 's/^/#   /' "$WORK/install.log" >&2
    bail "install: ${install_cmd[*]}"
fi
check "install: dpkg status is 'install ok installed'" test "$(pkg_status)" = "install ok installed"
check "install: $SO_PATH present" test -f "$SO_PATH"
check "install: $SO_PATH mode 0644 or 0755" grep -qxE '644|755' <<<"$(stat -c %a "$SO_PATH" 2>/dev/null)"
check "install: $CONF_PATH present, mode 0644" test "$(stat -c %a "$CONF_PATH" 2>/dev/null)" = 644
check "install: $CONF_PATH is the sample config" cmp -s "$SAMPLE" "$CONF_PATH"
for doc in README.md CHANGELOG.md copyright; do
    check "install: $DOC_DIR/$doc present" test -f "$DOC_DIR/$doc"
done

# --- remove: module gone, edited conffile kept -----------------------------------
as_root sh -c 'printf "%s\n" "$1" >>"$2"' _ "$MARKER" "$CONF_PATH"
check "edit: appended a comment to $CONF_PATH" grep -qxF "$MARKER" "$CONF_PATH"
if as_root dpkg -r "$PKG" >"$WORK/remove.log" 2>&1; then
    ok "remove: dpkg -r $PKG"
else
    sed 's/^/#   /' "$WORK/remove.log" >&2
    not_ok "remove: dpkg -r $PKG"
fi
check "remove: dpkg status is 'deinstall ok config-files'" test "$(pkg_status)" = "deinstall ok config-files"
check "remove: $SO_PATH gone" test ! -e "$SO_PATH"
check "remove: $DOC_DIR/README.md gone" test ! -e "$DOC_DIR/README.md"
check "remove: edited conffile kept" grep -qxF "$MARKER" "$CONF_PATH"

# --- purge: conffile gone ------------------------------------------------------
if as_root dpkg -P "$PKG" >"$WORK/purge.log" 2>&1; then
    ok "purge: dpkg -P $PKG"
else
    sed 's/^/#   /' "$WORK/purge.log" >&2
    not_ok "purge: dpkg -P $PKG"
fi
check "purge: $CONF_PATH gone" test ! -e "$CONF_PATH"
check "purge: dpkg no longer knows $PKG" pkg_unknown

summary
[[ $failed -eq 0 ]]
