#!/bin/sh
# Prints what tests/abi/layout.c prints when compiled against FreeSWITCH's own
# headers at a git tag, taken from a FreeSWITCH git repository (no build, no
# install needed): the record in tests/fixtures/abi-layout-freeswitch-<tag>-<arch>.txt.
#
#   scripts/record-abi-layout.sh /path/to/freeswitch.git v1.10.12 \
#       > tests/fixtures/abi-layout-freeswitch-1.10.12-x86_64.txt
#
# The two generated headers are stood in for: switch_am_config.h (configure's
# output) is empty and switch_version.h is the template with its @...@ fields
# zeroed. Neither declares anything layout.c prints.
set -eu
git_dir=$1
tag=${2:-v1.10.12}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir "$work/inc"
for f in $(git --git-dir="$git_dir" ls-tree --name-only "$tag" src/include/ libs/libteletone/src/); do
    case $f in
    *.h) git --git-dir="$git_dir" show "$tag:$f" > "$work/inc/${f##*/}" ;;
    esac
done
: > "$work/inc/switch_am_config.h"
git --git-dir="$git_dir" show "$tag:src/include/switch_version.h.template" |
    sed -e 's/@[A-Z_]*@/0/g' > "$work/inc/switch_version.h"
${CC:-cc} -I"$work/inc" "$here/tests/abi/layout.c" -o "$work/layout"
"$work/layout"
