#!/usr/bin/env bash
# Build the vsched test guest: an x86_64 kernel and an initramfs, from Debian
# packages only, plus our own static workloads.
#
#   scripts/guest/build-image.sh [OUTDIR] [--extra /path/to/bin]... [--force]
#
# OUTDIR (default build/guest) receives:
#   vmlinux          uncompressed kernel (PVH entry), or vmlinuz if it could
#                    not be unpacked
#   initramfs.cpio   busybox-static, hackbench (rt-tests) with its libraries,
#                    vips (libvips-tools) with its libraries (optional codec
#                    libraries replaced by stubs), /opt/vsched/bin/* workloads,
#                    /opt/extra/* extras, /init
#   manifest.json    file names, kernel and package versions, workloads
#   .stamp           hash of all inputs; a rerun with the same inputs only
#                    prints "up to date"; the same inputs give the same
#                    bytes (file dates are pinned)
# Debian .debs are cached in ${VSCHED_CACHE:-.cache}/debs, so a rebuild with
# the same package versions is offline. Missing host packages are installed
# with apt-get when root; otherwise the script lists them and fails.
# The steps are scripts of their own: kernel.sh (the kernel), rootfs.sh
# (busybox, hackbench, vips, /init), workloads.sh (our workloads, tools and
# extras); this script checks the host, decides whether anything changed,
# runs them and packs the result. See docs/guest.rst.
set -euo pipefail

steps=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$steps/common.sh"
self="$steps/build-image.sh"

usage() {
    sed -n '2,/^set -euo/p' "$self" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

outdir=
force=0
extras=()
while [ $# -gt 0 ]; do
    case "$1" in
    --extra) [ $# -ge 2 ] || die "--extra needs a path"; extras+=("$2"); shift 2 ;;
    --extra=*) extras+=("${1#--extra=}"); shift ;;
    --force) force=1; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "build-image: unknown option $1" >&2; usage 2 ;;
    *) [ -z "$outdir" ] || die "only one OUTDIR"; outdir=$1; shift ;;
    esac
done
outdir=${outdir:-$repo/build/guest}
case "$outdir" in /*) ;; *) outdir="$PWD/$outdir" ;; esac

# ---------------------------------------------------------------- host packages
# command -> Debian package that provides what we use.
HOST_PKGS=(busybox-static rt-tests cpio gcc libc6-dev xz-utils zlib1g-dev libvips-tools binutils)
[ "$(uname -m)" = x86_64 ] || die "x86_64 host required (the guest binaries are built with the host gcc)"
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null ||
    die "needs a Debian-based host (dpkg, apt-get)"

pkg_versions() {   # "pkg version" lines for installed packages
    dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n' "$@" 2>/dev/null |
        awk '$1 ~ /^ii/ { print $2, $3 }'
}
missing=()
installed=$(pkg_versions "${HOST_PKGS[@]}")
for p in "${HOST_PKGS[@]}"; do
    grep -q "^$p " <<<"$installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        log "installing missing host packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get -qq -o Dpkg::Use-Pty=0 install --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
            apt-get -qq update >/dev/null
            apt-get -qq -o Dpkg::Use-Pty=0 install --no-install-recommends "${missing[@]}" >/dev/null
        }
        installed=$(pkg_versions "${HOST_PKGS[@]}")
    else
        echo "build-image: missing host packages (install as root):" >&2
        printf '  apt-get install %s\n' "${missing[*]}" >&2
        exit 1
    fi
fi

# ---------------------------------------------------------------- kernel package
read -r kpkg kver_deb < <("$steps/kernel.sh" resolve) || die "cannot resolve the kernel package"
kernel_release=${kpkg#linux-image-}     # e.g. 6.1.0-56-amd64

# ---------------------------------------------------------------- up to date?
sources=("$self" "$steps/common.sh" "$steps/kernel.sh" "$steps/rootfs.sh" "$steps/workloads.sh"
         "$guest_src/init")
while IFS= read -r f; do sources+=("$f"); done < <(
    find "$guest_src/workloads" "$guest_src/tools" -type f \( -name '*.c' -o -name '*.h' -o -name '*.sh' \) | LC_ALL=C sort)
for x in "${extras[@]}"; do
    [ -f "$x" ] || die "--extra $x: no such file"
    [ -x "$x" ] || die "--extra $x: not executable"
done
stamp=$(
    {
        echo "kernel $kpkg $kver_deb"
        echo "$installed"
        gcc -dumpfullversion
        for f in "${sources[@]}"; do echo "src ${f#"$repo"/}"; sha256sum <"$f"; done
        for x in "${extras[@]}"; do echo "extra $(basename "$x")"; sha256sum <"$x"; done
    } | sha256sum | cut -c1-32
)
if [ $force = 0 ] && [ -f "$outdir/.stamp" ] && [ "$(cat "$outdir/.stamp")" = "$stamp" ] &&
    [ -f "$outdir/manifest.json" ] && [ -f "$outdir/initramfs.cpio" ] &&
    { [ -f "$outdir/vmlinux" ] || [ -f "$outdir/vmlinuz" ]; }; then
    log "up to date ($outdir, kernel $kernel_release)"
    exit 0
fi

# ---------------------------------------------------------------- build
mkdir -p "$outdir"
exec 9>"$outdir/.lock"
flock 9
t_start=$(date +%s.%N)
work=$(mktemp -d "$outdir/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$steps/kernel.sh" fetch "$kpkg" "$kver_deb" "$work"
kernel_file=vmlinux
[ -f "$work/vmlinux" ] || kernel_file=vmlinuz
"$steps/rootfs.sh" "$work/root" "$work"
"$steps/workloads.sh" "$work/root" "$work" "${extras[@]}"
mapfile -t vips_stubs <"$work/vips-stubs"
mapfile -t workloads <"$work/workloads"
mapfile -t extra_names <"$work/extras"

# Every file dated 2020-01-01 (the RTC base of virtual-time runs): the dates
# are unpacked into the guest and change the instructions its boot runs, so
# with build dates two builds of the same sources ran differently in
# virtual time (docs/design/virtual-time.rst, "Determinism").
find "$work/root" -mindepth 1 -exec touch -h -d @1577836800 {} +
(cd "$work/root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) >"$work/initramfs.cpio"

json_list() { local s= x; for x in "$@"; do s="$s${s:+, }\"$x\""; done; echo "[$s]"; }
pkgver() { awk -v p="$1" '$1 == p { print $2 }' <<<"$installed"; }
cat >"$work/manifest.json" <<EOF
{
  "kernel": "$kernel_file",
  "initrd": "initramfs.cpio",
  "kernel_release": "$kernel_release",
  "kernel_package": "$kpkg",
  "kernel_package_version": "$kver_deb",
  "busybox_static": "$(pkgver busybox-static)",
  "rt_tests": "$(pkgver rt-tests)",
  "libc6_dev": "$(pkgver libc6-dev)",
  "gcc": "$(gcc -dumpfullversion)",
  "libvips_tools": "$(pkgver libvips-tools)",
  "zlib1g_dev": "$(pkgver zlib1g-dev)",
  "vips_stubs": $(json_list "${vips_stubs[@]}"),
  "workloads": $(json_list noop false hackbench panic hang shell "${workloads[@]}"),
  "extras": $(json_list "${extra_names[@]}"),
  "stamp": "$stamp"
}
EOF

rm -f "$outdir/vmlinux" "$outdir/vmlinuz" "$outdir/.stamp"
mv "$work/$kernel_file" "$work/initramfs.cpio" "$work/manifest.json" "$outdir/"
echo "$stamp" >"$outdir/.stamp"
t_end=$(date +%s.%N)
log "built $outdir: $kernel_file ($kernel_release, $(du -h "$outdir/$kernel_file" | cut -f1)), initramfs.cpio ($(du -h "$outdir/initramfs.cpio" | cut -f1)); workloads: ${workloads[*]}${extra_names:+; extras: ${extra_names[*]}} ($(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }') s)"
