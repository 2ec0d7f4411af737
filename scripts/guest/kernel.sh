#!/usr/bin/env bash
# Guest image step: the kernel, from Debian's linux-image-amd64.
#
#   kernel.sh resolve       print "PACKAGE VERSION" of the current kernel
#   kernel.sh fetch PACKAGE VERSION DIR
#                           put DIR/vmlinux (ELF, PVH entry) or, when it cannot
#                           be unpacked, DIR/vmlinuz
# The .deb is cached in ${VSCHED_CACHE:-.cache}/debs and the extracted kernel
# per package version in .../kernel, so a rebuild is offline and quick.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# The current bookworm kernel: whatever linux-image-amd64 depends on.
resolve_kernel() {
    apt-cache depends --important linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

package_version() {
    apt-cache show --no-all-versions "$1" 2>/dev/null | awk '/^Version:/ { print $2; exit }'
}

resolve() {
    # apt-cache can take seconds (hosts that disable apt's pkgcache), so the
    # answer is cached against the state of the package lists.
    local lists_key resolve_cache kpkg='' kver_deb='' cached base
    lists_key=$( { ls -l --time-style=+%s /var/lib/apt/lists/ 2>/dev/null; cat /etc/debian_version 2>/dev/null; } |
        sha256sum | cut -c1-16)
    resolve_cache="$cache_dir/kernel-pkg.$lists_key"
    if [ -s "$resolve_cache" ]; then
        read -r kpkg kver_deb <"$resolve_cache" || true
    else
        kpkg=$(resolve_kernel)
        [ -z "$kpkg" ] || kver_deb=$(package_version "$kpkg")
        if [ -n "$kpkg" ] && [ -n "$kver_deb" ]; then
            mkdir -p "$cache_dir"
            rm -f "$cache_dir"/kernel-pkg.*
            echo "$kpkg $kver_deb" >"$resolve_cache"
        fi
    fi
    if [ -z "$kpkg" ] || [ -z "$kver_deb" ]; then
        # no package lists: use the newest cached .deb (offline rebuild), else update
        cached=$(ls -1 "$deb_cache"/linux-image-[0-9]*-amd64_*_amd64.deb 2>/dev/null | sort -V | tail -n 1 || true)
        if [ -n "$cached" ]; then
            base=$(basename "$cached" .deb)
            kpkg=${base%%_*}
            kver_deb=${base#*_}; kver_deb=${kver_deb%_amd64}; kver_deb=${kver_deb//%3a/:}
        elif [ "$(id -u)" = 0 ]; then
            log "no package lists; running apt-get update" >&2
            apt-get -qq update >/dev/null
            kpkg=$(resolve_kernel)
            kver_deb=$(package_version "$kpkg")
        fi
        [ -n "$kpkg" ] && [ -n "$kver_deb" ] || die "cannot resolve linux-image-amd64 (run apt-get update)"
    fi
    echo "$kpkg $kver_deb"
}

download() {  # package version deb scratch
    local kpkg=$1 kver_deb=$2 kdeb=$3 scratch=$4 sandbox=()
    log "downloading $kpkg=$kver_deb"
    [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
    (cd "$scratch" && apt-get -qq "${sandbox[@]}" download "$kpkg=$kver_deb") ||
        die "apt-get download $kpkg=$kver_deb failed (run apt-get update?)"
    mkdir -p "$deb_cache"
    mv "$scratch"/"${kpkg}"_*.deb "$kdeb.part"
    mv "$kdeb.part" "$kdeb"
}

# Unpack the bzImage payload (boot protocol >= 2.08: payload_offset at 0x248,
# payload_length at 0x24c, relative to the protected-mode code at
# (setup_sects+1)*512) into the ELF vmlinux, which QEMU boots via PVH.
unpack_vmlinux() {
    local bz=$1 out=$2 setup_sects poff plen start magic
    [ "$(od -An -c -j 514 -N 4 "$bz" | tr -d ' ')" = HdrS ] || return 1
    [ "$(od -An -tu2 -j 518 -N 2 "$bz" | tr -d ' ')" -ge 520 ] || return 1   # 0x208 = 2.08
    setup_sects=$(od -An -tu1 -j 497 -N 1 "$bz" | tr -d ' ')
    [ "$setup_sects" = 0 ] && setup_sects=4
    read -r poff plen < <(od -An -tu4 -j 584 -N 8 "$bz")
    start=$(( (setup_sects + 1) * 512 + poff ))
    magic=$(od -An -tx1 -j "$start" -N 6 "$bz" | tr -d ' \n')
    local payload=(dd if="$bz" bs=1M iflag=skip_bytes,count_bytes skip="$start" count="$plen" status=none)
    case "$magic" in
    fd377a585a00*) "${payload[@]}" | xz -dc --single-stream >"$out" 2>/dev/null ;;
    1f8b*) "${payload[@]}" | gzip -dcq >"$out" 2>/dev/null || [ -s "$out" ] ;;   # trailing size word
    28b52ffd*) command -v zstd >/dev/null && "${payload[@]}" | zstd -dcq >"$out" 2>/dev/null ;;
    5d00*) "${payload[@]}" | xz -dc --format=lzma >"$out" 2>/dev/null ;;
    *) return 1 ;;
    esac || return 1
    [ "$(od -An -tx1 -N 4 "$out" | tr -d ' \n')" = 7f454c46 ]
}

# Only the bzImage is needed, no modules; the extraction (the .deb's
# data.tar.xz takes most of a build) is cached per package version.
extract() {  # package version deb kcache scratch
    local kpkg=$1 kver_deb=$2 kdeb=$3 kcache=$4 scratch=$5 release=${1#linux-image-} file=vmlinux
    dpkg-deb --fsys-tarfile "$kdeb" | tar -xO "./boot/vmlinuz-$release" >"$scratch/vmlinuz"
    [ -s "$scratch/vmlinuz" ] || die "no boot/vmlinuz-$release in $kdeb"
    if ! unpack_vmlinux "$scratch/vmlinuz" "$scratch/vmlinux"; then
        log "warning: could not unpack vmlinux from the bzImage; using vmlinuz"
        file=vmlinuz
    fi
    rm -rf "$cache_dir/kernel"
    mkdir -p "$kcache"
    mv "$scratch/$file" "$kcache/$file.part"
    mv "$kcache/$file.part" "$kcache/$file"
}

fetch() {  # package version dir
    local kpkg=$1 kver_deb=$2 dir=$3 kdeb kcache scratch file
    kdeb="$deb_cache/${kpkg}_${kver_deb//:/%3a}_amd64.deb"
    kcache="$cache_dir/kernel/${kpkg}_${kver_deb//:/%3a}"
    if [ ! -s "$kcache/vmlinux" ] && [ ! -s "$kcache/vmlinuz" ]; then
        scratch=$(mktemp -d "$dir/.kernel.XXXXXX")
        [ -s "$kdeb" ] || download "$kpkg" "$kver_deb" "$kdeb" "$scratch"
        extract "$kpkg" "$kver_deb" "$kdeb" "$kcache" "$scratch"
        rm -rf "$scratch"
    fi
    file=vmlinux
    [ -s "$kcache/vmlinux" ] || file=vmlinuz
    ln -f "$kcache/$file" "$dir/$file" 2>/dev/null || cp "$kcache/$file" "$dir/$file"
}

case "${1:-}" in
resolve) [ $# = 1 ] || die "usage: kernel.sh resolve"; resolve ;;
fetch) [ $# = 4 ] || die "usage: kernel.sh fetch PACKAGE VERSION DIR"; fetch "$2" "$3" "$4" ;;
*) die "usage: kernel.sh resolve | fetch PACKAGE VERSION DIR" ;;
esac
