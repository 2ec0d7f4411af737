#!/usr/bin/env bash
# Guest image step: the root file system but our workloads.
#
#   rootfs.sh ROOT WORK
#
# ROOT receives the directory skeleton, busybox-static (and its applet
# links), hackbench (rt-tests) with its libraries, vips (libvips-tools) at
# /usr/lib/vsched-vips/vips with its libraries, optional ones replaced by
# stubs, /init and /etc. WORK (scratch) receives vips-stubs: the stubbed
# libraries, one a line.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ $# = 2 ] || die "usage: rootfs.sh ROOT WORK"
root=$1 work=$2

skeleton() {
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,opt/vsched/bin,opt/extra}
}

install_busybox() {
    local busybox b
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
}

install_hackbench() {
    local hackbench
    hackbench=$(command -v hackbench || echo /usr/bin/hackbench)
    [ -x "$hackbench" ] || die "hackbench not found (rt-tests)"
    copy_with_libs "$root" "$hackbench" usr/bin/hackbench
}

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

install_vips() {
    local vips_bin vips_map vips_todo vips_seen=" " dep path
    vips_bin=$(command -v vips || echo /usr/bin/vips)
    [ -x "$vips_bin" ] || die "vips not found (libvips-tools)"
    mkdir -p "$root/usr/lib/vsched-vips"
    cp "$vips_bin" "$root/usr/lib/vsched-vips/vips"
    : >"$work/vips-stubs"
    # Walk the NEEDED graph from vips: libraries in VIPS_REAL_LIBS are copied and
    # walked further, any other library is replaced by a stub (and not walked).
    vips_map=$(ldd "$vips_bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }')
    vips_todo=$(objdump -p "$vips_bin" | awk '$1 == "NEEDED" { print $2 }')
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
                echo "$dep" >>"$work/vips-stubs"
            fi ;;
        esac
    done
    # the ELF loader
    ldd "$vips_bin" | awk '/^\t\// { print $1 }' | while read -r lib; do
        mkdir -p "$root/$(dirname "$lib")"
        [ -e "$root/$lib" ] || cp -L "$lib" "$root/$lib"
    done
}

install_etc() {
    install -m 755 "$guest_src/init" "$root/init"
    echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
    echo "root:x:0:" >"$root/etc/group"
    echo vsched >"$root/etc/hostname"
    # The kernel opens /dev/console before /init runs (devtmpfs comes later).
    if [ "$(id -u)" = 0 ]; then
        mknod -m 600 "$root/dev/console" c 5 1
    fi
}

skeleton
install_busybox
install_hackbench
install_vips
install_etc
