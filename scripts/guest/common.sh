# Shared by the guest image steps (sourced): paths, caches, messages.
# shellcheck shell=bash
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck disable=SC2034 # used by the steps
guest_src="$repo/tests/guest"
cache_dir=${VSCHED_CACHE:-$repo/.cache}
deb_cache="$cache_dir/debs"

die() { echo "build-image: $*" >&2; exit 1; }
log() { echo "build-image: $*"; }

# Copy a dynamically linked program with its libraries and loader (via ldd).
copy_with_libs() {  # root src dst
    local root=$1 src=$2 dst=$3 lib
    cp "$src" "$root/$dst"
    ldd "$src" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
        mkdir -p "$root/$(dirname "$lib")"
        [ -e "$root/$lib" ] || cp -L "$lib" "$root/$lib"
    done
}
