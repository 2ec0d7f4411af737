#!/usr/bin/env bash
# Configure (when needed) and build qemu-system-x86_64 from build/qemu-src.
# Usage: build-qemu.sh [ninja targets...]   (default: qemu-system-x86_64)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
# VSCHED_QEMU_VARIANT=upstream builds the pristine tree (no vsched) for A/B
# benchmarks; =novsched builds our tree configured --disable-vsched; =user
# the x86_64 linux-user target (tests/integration/test_build_options.py).
# Each variant has its own build directory.  (novsched keeps the main
# build's config-host.h, so after it nearly everything is a ccache hit; a
# linux-user target changes config-host.h, hence its own variant.)
variant_flags=()
case ${VSCHED_QEMU_VARIANT:-} in
upstream)
    src=$top/build/qemu-pristine
    bld=$top/build/qemu-upstream-build ;;
novsched)
    src=$top/build/qemu-src
    bld=$top/build/qemu-novsched-build
    variant_flags=(--disable-vsched) ;;
user)
    src=$top/build/qemu-src
    bld=$top/build/qemu-user-build
    variant_flags=(--target-list=x86_64-linux-user) ;;
"")
    src=$top/build/qemu-src
    bld=$top/build/qemu-build ;;
*)
    echo "build-qemu: unknown VSCHED_QEMU_VARIANT '$VSCHED_QEMU_VARIANT' (upstream, novsched, user)" >&2
    exit 2 ;;
esac
ccache=${VSCHED_CCACHE:-yes}
# Paths relative to the checkout, so another clone of the repo hits the cache.
export CCACHE_BASEDIR=$top CCACHE_NOHASHDIR=1

QEMU_FLAGS=(
    --python=/usr/bin/python3       # the interpreter that sees Debian's meson
    --target-list=x86_64-softmmu
    --enable-tcg --enable-kvm --enable-slirp
    --disable-docs --disable-werror --disable-install-blobs
    --disable-rust --disable-xen --disable-gtk --disable-sdl --disable-vnc
    --disable-opengl --disable-spice --disable-curses --disable-cocoa
    --disable-download
    # Debian's seabios, qemu-system-data and ipxe-qemu hold the firmware that
    # Debian's source tarball lacks: x86 guests boot without -L flags.
    --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
)
# A later --target-list replaces the one above.
QEMU_FLAGS+=("${variant_flags[@]}")
# shellcheck disable=SC2206
QEMU_FLAGS+=(${VSCHED_QEMU_EXTRA_FLAGS:-})

flags_stamp=$(printf '%s\n' "${QEMU_FLAGS[@]}" "$ccache" "$(cat "$src/.vsched-stamp" 2>/dev/null || cat "$src/.vsched-source")" | sha256sum | cut -c1-16)
if [ "$(cat "$bld/.vsched-flags" 2>/dev/null)" != "$flags_stamp" ] || [ ! -f "$bld/build.ninja" ]; then
    rm -rf "$bld" && mkdir -p "$bld"
    if [ "$ccache" = yes ] && command -v ccache >/dev/null; then
        export CC="ccache gcc" CXX="ccache g++"
    fi
    (cd "$bld" && "$src/configure" "${QEMU_FLAGS[@]}" > configure.log 2>&1) || {
        tail -30 "$bld/configure.log" >&2
        echo "build-qemu: QEMU configure failed (full log: $bld/configure.log)" >&2
        exit 1
    }
    echo "$flags_stamp" > "$bld/.vsched-flags"
fi
[ $# -gt 0 ] || set -- qemu-system-x86_64
ninja -C "$bld" "$@"
# Run from its build tree, QEMU looks for --firmwarepath under qemu-bundle/.
for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
    mkdir -p "$bld/qemu-bundle${d%/*}"
    [ -L "$bld/qemu-bundle$d" ] || ln -s "$d" "$bld/qemu-bundle$d"
done
[ "$bld" != "$top/build/qemu-build" ] || ln -sfn qemu-build/qemu-system-x86_64 "$top/build/qemu-system-x86_64"
