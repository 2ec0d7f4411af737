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
#                    prints "up to date"
# Debian .debs are cached in ${VSCHED_CACHE:-.cache}/debs, so a rebuild with
# the same package versions is offline. Missing host packages are installed
# with apt-get when root; otherwise the script lists them and fails.
# See docs/guest.rst.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
self="$repo/scripts/guest/build-image.sh"
guest_src="$repo/tests/guest"
cache_dir=${VSCHED_CACHE:-$repo/.cache}
deb_cache="$cache_dir/debs"

die() { echo "build-image: $*" >&2; exit 1; }
log() { echo "build-image: $*"; }

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
# The current bookworm kernel: whatever linux-image-amd64 depends on.
resolve_kernel() {
    apt-cache depends --important linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
# apt-cache can take seconds (hosts that disable apt's pkgcache), so the answer
# is cached against the state of the package lists.
lists_key=$( { ls -l --time-style=+%s /var/lib/apt/lists/ 2>/dev/null; cat /etc/debian_version 2>/dev/null; } |
    sha256sum | cut -c1-16)
resolve_cache="$cache_dir/kernel-pkg.$lists_key"
kpkg= kver_deb=
if [ -s "$resolve_cache" ]; then
    read -r kpkg kver_deb <"$resolve_cache" || true
else
    kpkg=$(resolve_kernel)
    if [ -n "$kpkg" ]; then
        kver_deb=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null | awk '/^Version:/ { print $2; exit }')
    fi
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
        log "no package lists; running apt-get update"
        apt-get -qq update >/dev/null
        kpkg=$(resolve_kernel)
        kver_deb=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null | awk '/^Version:/ { print $2; exit }')
    fi
    [ -n "$kpkg" ] && [ -n "$kver_deb" ] || die "cannot resolve linux-image-amd64 (run apt-get update)"
fi
kernel_release=${kpkg#linux-image-}     # e.g. 6.1.0-56-amd64
kdeb="$deb_cache/${kpkg}_${kver_deb//:/%3a}_amd64.deb"

# ---------------------------------------------------------------- up to date?
sources=("$self" "$guest_src/init")
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
mkdir -p "$outdir" "$deb_cache"
exec 9>"$outdir/.lock"
flock 9
t_start=$(date +%s.%N)
work=$(mktemp -d "$outdir/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ ! -s "$kdeb" ]; then
    log "downloading $kpkg=$kver_deb"
    sandbox=()
    [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
    (cd "$work" && apt-get -qq "${sandbox[@]}" download "$kpkg=$kver_deb") ||
        die "apt-get download $kpkg=$kver_deb failed (run apt-get update?)"
    mv "$work"/"${kpkg}"_*.deb "$kdeb.part"
    mv "$kdeb.part" "$kdeb"
fi

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
# The extracted kernel is cached per package version (unpacking the .deb's
# data.tar.xz takes most of a build).
kcache="$cache_dir/kernel/${kpkg}_${kver_deb//:/%3a}"
if [ -s "$kcache/vmlinux" ]; then
    kernel_file=vmlinux
elif [ -s "$kcache/vmlinuz" ]; then
    kernel_file=vmlinuz
else
    # Only the bzImage is needed, no modules.
    dpkg-deb --fsys-tarfile "$kdeb" | tar -xO "./boot/vmlinuz-$kernel_release" >"$work/vmlinuz"
    [ -s "$work/vmlinuz" ] || die "no boot/vmlinuz-$kernel_release in $kdeb"
    kernel_file=vmlinux
    if ! unpack_vmlinux "$work/vmlinuz" "$work/vmlinux"; then
        log "warning: could not unpack vmlinux from the bzImage; using vmlinuz"
        kernel_file=vmlinuz
    fi
    rm -rf "$cache_dir/kernel"
    mkdir -p "$kcache"
    mv "$work/$kernel_file" "$kcache/$kernel_file.part"
    mv "$kcache/$kernel_file.part" "$kcache/$kernel_file"
fi
ln -f "$kcache/$kernel_file" "$work/$kernel_file" 2>/dev/null || cp "$kcache/$kernel_file" "$work/$kernel_file"

# Root file system.
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,opt/vsched/bin,opt/extra}
busybox=$(command -v busybox || true)
for b in /bin/busybox /usr/bin/busybox; do [ -x "$b" ] && busybox=$b && break; done
[ -n "$busybox" ] || die "busybox not found (busybox-static)"
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is not static: install busybox-static"
cp "$busybox" "$root/bin/busybox"
"$root/bin/busybox" --list-full | while read -r path; do
    [ "$path" = bin/busybox ] && continue
    [ -e "$root/$path" ] || ln -s /bin/busybox "$root/$path"
done
ln -sf /bin/busybox "$root/bin/sh"

# Copy a dynamically linked program with its libraries and loader (via ldd).
copy_with_libs() {
    local src=$1 dst=$2 lib
    cp "$src" "$root/$dst"
    ldd "$src" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
        mkdir -p "$root/$(dirname "$lib")"
        [ -e "$root/$lib" ] || cp -L "$lib" "$root/$lib"
    done
}
hackbench=$(command -v hackbench || echo /usr/bin/hackbench)
[ -x "$hackbench" ] || die "hackbench not found (rt-tests)"
copy_with_libs "$hackbench" usr/bin/hackbench

# vips (libvips-tools) for the vips workload. It lives outside PATH
# (/usr/lib/vsched-vips/vips) because the workload script is called vips too.
# libvips links about 30 libraries (110 libraries, 100 MB with their own
# dependencies: ICU data, librsvg, OpenEXR, HDF5, cairo/pango...) that the
# benchmark chain never calls: those are replaced by stubs with the same SONAME
# and the same (versioned) symbols, so the initramfs grows by about 10 MB only.
# VIPS_REAL_LIBS: the libraries kept real (with their own dependencies).
VIPS_REAL_LIBS="libvips.so.42 libglib-2.0.so.0 libgio-2.0.so.0 libgobject-2.0.so.0 libgmodule-2.0.so.0 libexpat.so.1 libz.so.1 liborc-0.4.so.0 libm.so.6 libc.so.6 libpcre2-8.so.0 libffi.so.8 libmount.so.1 libblkid.so.1 libselinux.so.1"
make_stub() {   # real-library stub-output
    local real=$1 out=$2 soname c map
    soname=$(objdump -p "$real" | awk '$1 == "SONAME" { print $2 }')
    c="$work/stub-$soname.c" map="$work/stub-$soname.map"
    nm -D --defined-only -S "$real" | awk -v c="$c" -v map="$map" '
        function hex(h,   i, v) { v = 0; h = tolower(h); for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1; return v }
        BEGIN { print "/* generated stub: every function returns 0 */" >c; n = 0 }
        {
            if (NF == 4) { size = $2; type = $3; name = $4 } else { size = ""; type = $2; name = $3 }
            if (type == "A" || type == "a") next
            ver = ""
            if (index(name, "@@")) { split(name, p, "@@"); name = p[1]; ver = p[2] }
            else if (index(name, "@")) next
            if (seen[name]++) next
            n++
            if (type ~ /^[TtWi]$/)
                printf "long s%d(void) __asm__(\"%s\");\nlong s%d(void) { return 0; }\n", n, name, n >c
            else {
                sz = size == "" ? 8 : hex(size); if (sz < 8) sz = 8
                printf "char o%d[%d] __asm__(\"%s\") __attribute__((aligned(16))) = { 0 };\n", n, sz, name >c
            }
            if (ver != "") vers[ver] = vers[ver] "  " name ";\n"
        }
        END { for (v in vers) printf "%s {\n global:\n%s};\n", v, vers[v] >map; close(map) }'
    local vs=()
    [ -s "$map" ] && vs=(-Wl,--version-script="$map")
    gcc -shared -fPIC -nostdlib -O0 -o "$out" -Wl,-soname,"$soname" "${vs[@]}" "$c" ||
        die "building the stub for $real failed"
}
vips_bin=$(command -v vips || echo /usr/bin/vips)
[ -x "$vips_bin" ] || die "vips not found (libvips-tools)"
mkdir -p "$root/usr/lib/vsched-vips"
cp "$vips_bin" "$root/usr/lib/vsched-vips/vips"
vips_stubs=()
# Walk the NEEDED graph from vips: libraries in VIPS_REAL_LIBS are copied and
# walked further, any other library is replaced by a stub (and not walked).
vips_map=$(ldd "$vips_bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }')
vips_todo=$(objdump -p "$vips_bin" | awk '$1 == "NEEDED" { print $2 }')
vips_seen=" "
while [ -n "$vips_todo" ]; do
    dep=${vips_todo%%$'\n'*}
    if [ "$dep" = "$vips_todo" ]; then vips_todo=; else vips_todo=${vips_todo#*$'\n'}; fi
    case "$dep" in ''|ld-linux*) continue ;; esac   # the loader: copied below
    case "$vips_seen" in *" $dep "*) continue ;; esac
    vips_seen="$vips_seen$dep "
    path=$(awk -v l="$dep" '$1 == l { print $2 }' <<<"$vips_map")
    [ -n "$path" ] || die "vips: cannot resolve $dep"
    mkdir -p "$root/$(dirname "$path")"
    case " $VIPS_REAL_LIBS " in
    *" $dep "*)
        [ -e "$root/$path" ] || cp -L "$path" "$root/$path"
        vips_todo="$vips_todo"$'\n'"$(objdump -p "$path" | awk '$1 == "NEEDED" { print $2 }')" ;;
    *)
        if [ ! -e "$root/$path" ]; then
            make_stub "$path" "$root/$path"
            vips_stubs+=("$dep")
        fi ;;
    esac
done
# the ELF loader
ldd "$vips_bin" | awk '/^\t\// { print $1 }' | while read -r lib; do
    mkdir -p "$root/$(dirname "$lib")"
    [ -e "$root/$lib" ] || cp -L "$lib" "$root/$lib"
done

# Our workloads and tools, static. A workload source may ask for libraries
# with a line "vsched-ldflags: -lz ..." (static Debian libraries only).
# Shell workloads (*.sh) are installed as they are.
CFLAGS=(-O2 -g0 -static -pthread -Wall -Wextra)
workloads=()
for src in "$guest_src"/workloads/*.c; do
    name=$(basename "$src" .c)
    read -r -a ldflags < <(sed -n 's/.*vsched-ldflags: *\(.*\)$/\1/p' "$src" | head -n 1) || true
    gcc "${CFLAGS[@]}" -o "$root/opt/vsched/bin/$name" "$src" "${ldflags[@]}" || die "compiling $src failed"
    strip "$root/opt/vsched/bin/$name" 2>/dev/null || true
    workloads+=("$name")
done
for src in "$guest_src"/workloads/*.sh; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .sh)
    install -m 755 "$src" "$root/opt/vsched/bin/$name"
    workloads+=("$name")
done
for src in "$guest_src"/tools/*.c; do
    name=$(basename "$src" .c)
    gcc "${CFLAGS[@]}" -o "$root/usr/bin/$name" "$src" || die "compiling $src failed"
    strip "$root/usr/bin/$name" 2>/dev/null || true
done

extra_names=()
for x in "${extras[@]}"; do
    name=$(basename "$x")
    case " noop true false hackbench panic hang shell ${workloads[*]} " in
    *" $name "*) die "--extra $x: name '$name' clashes with a built-in workload" ;;
    esac
    if ldd "$x" >/dev/null 2>&1; then
        log "note: $name is dynamically linked; copying its libraries too"
        copy_with_libs "$x" "opt/extra/$name"
    else
        cp "$x" "$root/opt/extra/$name"
    fi
    chmod 755 "$root/opt/extra/$name"
    extra_names+=("$name")
done

install -m 755 "$guest_src/init" "$root/init"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
echo vsched >"$root/etc/hostname"
# The kernel opens /dev/console before /init runs (devtmpfs comes later).
if [ "$(id -u)" = 0 ]; then
    mknod -m 600 "$root/dev/console" c 5 1
fi

(cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
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
