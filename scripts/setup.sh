#!/usr/bin/env bash
# Installs what building and testing mod_cc_events needs on Debian/Ubuntu:
# redis-server (the tests start their own), libclang (bindgen), pkg-config, a C compiler,
# python3-redis (the state mirror's Python recipe runs in a test), and chromium
# with chromium-driver (the wallboard's browser tests).
# Rust itself is expected to be installed already (rustup).
set -euo pipefail

packages=(redis-server redis-sentinel openssl libclang-dev pkg-config build-essential python3-redis chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    echo "setup: ${packages[*]} already installed"
    exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
echo "setup: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
