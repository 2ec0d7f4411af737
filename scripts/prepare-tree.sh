#!/usr/bin/env bash
# Lay vsched over a pristine QEMU tree: build/qemu-src = pristine + patches
# + our files.  The tree is recreated only when the pristine source or the
# patches change; overlay files are copied only when their content differs,
# so ninja rebuilds just what changed.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
pristine=${1:-$top/build/qemu-pristine}
tree=${2:-$top/build/qemu-src}
patches=$top/patches/10.0
# Directories of ours that mirror QEMU's layout.
OVERLAY_DIRS="accel hw target include qapi tests/qtest"

die() { echo "prepare-tree: $*" >&2; exit 1; }

[ -f "$pristine/VERSION" ] || die "no QEMU tree at $pristine (run scripts/fetch-qemu.sh)"
version=$(cat "$pristine/VERSION")
stamp=$( { cat "$pristine/.vsched-source" "$pristine/VERSION"; cat "$patches"/*.patch; } | sha256sum | cut -c1-16)

apply_patches() {
    local p
    for p in "$patches"/*.patch; do
        if ! patch -s -p1 -N --dry-run -d "$tree.new" < "$p" >/dev/null; then
            patch -p1 -N --dry-run -d "$tree.new" < "$p" >&2 || true
            die "patch $(basename "$p") does not apply to QEMU $version (see the rejected hunks above; docs/porting.rst explains how to port)"
        fi
        patch -s -p1 -N -d "$tree.new" < "$p"
    done
}

if [ "$(cat "$tree/.vsched-stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$tree.new"
    cp -a "$pristine" "$tree.new"
    apply_patches
    echo "$stamp" > "$tree.new/.vsched-stamp"
    rm -rf "$tree" && mv "$tree.new" "$tree"
    echo "prepare-tree: QEMU $version with $(ls "$patches"/*.patch | wc -l) patches at $tree"
fi

# Sync our files; remember them so a file deleted from the repo leaves the tree.
manifest=$tree/.vsched-overlay
new_manifest=$(mktemp)
( cd "$top" && for d in $OVERLAY_DIRS; do if [ -d "$d" ]; then find "$d" -type f; fi; done ) \
    | sort > "$new_manifest"
while read -r f; do
    if ! cmp -s "$top/$f" "$tree/$f"; then
        if [ -f "$pristine/$f" ]; then
            die "$f exists upstream: change it with a patch, not an overlay file"
        fi
        mkdir -p "$tree/$(dirname "$f")" && cp "$top/$f" "$tree/$f"
    fi
done < "$new_manifest"
if [ -f "$manifest" ]; then
    comm -23 "$manifest" "$new_manifest" | while read -r f; do rm -f "$tree/$f"; done
fi
mv "$new_manifest" "$manifest"
