#!/usr/bin/env bash
# Produce a pristine QEMU 10.0.x source tree in $1 (default build/qemu-pristine).
#
# Sources, first match wins:
#   --qemu-src=DIR      a tree given by the user (copied, never modified)
#   --qemu-tarball=F    a tarball given by the user
#   Debian's qemu source package from trixie (apt-get source)
#   the pinned upstream release tarball (URL and sha256 in qemu-pin.sh)
# Downloads are cached under .cache/qemu, so a rebuild is offline.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/qemu-pin.sh"
cache=${VSCHED_CACHE:-$top/.cache}/qemu
out=$top/build/qemu-pristine
qemu_src=
qemu_tarball=

for arg; do
    case $arg in
    --qemu-src=*) qemu_src=${arg#*=} ;;
    --qemu-tarball=*) qemu_tarball=${arg#*=} ;;
    --out=*) out=${arg#*=} ;;
    *) echo "fetch-qemu: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

die() { echo "fetch-qemu: $*" >&2; exit 1; }

check_version() {
    local v
    v=$(cat "$1/VERSION" 2>/dev/null) || die "$1 has no VERSION file: not a QEMU tree"
    case $v in
    "$QEMU_SERIES".*) ;;
    *) die "$1 is QEMU $v; vsched needs $QEMU_SERIES.x" ;;
    esac
    echo "$v"
}

unpack_tarball() {  # tarball dest
    local tmp
    tmp=$(mktemp -d "$out.tmp.XXXXXX")
    tar -C "$tmp" -xf "$1" || die "cannot unpack $1"
    set -- "$tmp"/*
    [ $# = 1 ] && [ -d "$1" ] || die "unexpected tarball layout"
    mv "$1" "$out.new" && rmdir "$tmp"
}

apt_source() {
    (cd "$cache" && apt-get -qq source --download-only "qemu/$QEMU_DEBIAN_SUITE") >/dev/null 2>&1
}

from_debian() {
    command -v apt-get >/dev/null || return 1
    local list=/etc/apt/sources.list.d/vsched-$QEMU_DEBIAN_SUITE-src.sources
    mkdir -p "$cache"
    if ! ls "$cache"/qemu_"$QEMU_SERIES".*.orig.tar.xz >/dev/null 2>&1 && ! apt_source; then
        # Only when apt cannot find the source yet: add our own deb-src entry.
        [ "$(id -u)" = 0 ] && [ ! -e "$list" ] || return 1
        printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$QEMU_DEBIAN_SUITE" > "$list"
        apt-get -qq update && apt_source || return 1
    fi
    local orig deb
    orig=$(ls "$cache"/qemu_"$QEMU_SERIES".*.orig.tar.xz | sort -V | tail -1)
    deb=$(ls "${orig%.orig.tar.xz}"-*.debian.tar.xz | sort -V | tail -1)
    unpack_tarball "$orig"
    local p
    for p in $QEMU_DEBIAN_BUILD_PATCHES; do
        tar -xOf "$deb" "debian/patches/$p" | patch -s -p1 -d "$out.new" \
            || die "Debian build patch $p does not apply"
    done
    source_desc="Debian source package $(basename "${deb%.debian.tar.xz}")"
}

from_upstream() {
    local f=$cache/$(basename "$QEMU_UPSTREAM_URL")
    mkdir -p "$cache"
    if [ ! -f "$f" ]; then
        command -v curl >/dev/null || die "no curl to fetch $QEMU_UPSTREAM_URL"
        curl -fL --retry 2 -o "$f.part" "$QEMU_UPSTREAM_URL" || die "cannot fetch $QEMU_UPSTREAM_URL"
        mv "$f.part" "$f"
    fi
    echo "$QEMU_UPSTREAM_SHA256  $f" | sha256sum -c --quiet - \
        || { rm -f "$f"; die "sha256 mismatch for $f"; }
    unpack_tarball "$f"
    source_desc="upstream tarball $(basename "$f")"
}

rm -rf "$out.new" "$out".tmp.*
mkdir -p "$(dirname "$out")"
if [ -n "$qemu_src" ]; then
    [ -d "$qemu_src" ] || die "--qemu-src: $qemu_src is not a directory"
    check_version "$qemu_src" >/dev/null
    mkdir "$out.new"
    tar -C "$qemu_src" --exclude=./build --exclude=.git -cf - . | tar -C "$out.new" -xf -
    source_desc="user tree $qemu_src"
elif [ -n "$qemu_tarball" ]; then
    [ -f "$qemu_tarball" ] || die "--qemu-tarball: $qemu_tarball not found"
    unpack_tarball "$qemu_tarball"
    source_desc="user tarball $qemu_tarball"
elif ! from_debian; then
    rm -rf "$out.new"
    from_upstream
fi
version=$(check_version "$out.new")
echo "$source_desc" > "$out.new/.vsched-source"
rm -rf "$out" && mv "$out.new" "$out"
echo "fetch-qemu: QEMU $version from $source_desc"
