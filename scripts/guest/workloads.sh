#!/usr/bin/env bash
# Guest image step: our workloads and tools, and --extra programs.
#
#   workloads.sh ROOT WORK [EXTRA...]
#
# tests/guest/workloads/*.c are built static into ROOT/opt/vsched/bin (a
# source may ask for static Debian libraries with a line "vsched-ldflags: -lz
# ..."), *.sh installed as they are; tests/guest/tools/*.c into ROOT/usr/bin;
# each EXTRA (an executable) into ROOT/opt/extra, with its libraries when it
# is dynamically linked. WORK receives the names: workloads, extras (one a
# line).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ $# -ge 2 ] || die "usage: workloads.sh ROOT WORK [EXTRA...]"
root=$1 work=$2
shift 2

CFLAGS=(-O2 -g0 -static -pthread -Wall -Wextra)

build_workloads() {
    local src name ldflags
    : >"$work/workloads"
    for src in "$guest_src"/workloads/*.c; do
        name=$(basename "$src" .c)
        read -r -a ldflags < <(sed -n 's/.*vsched-ldflags: *\(.*\)$/\1/p' "$src" | head -n 1) || true
        gcc "${CFLAGS[@]}" -o "$root/opt/vsched/bin/$name" "$src" "${ldflags[@]}" || die "compiling $src failed"
        strip "$root/opt/vsched/bin/$name" 2>/dev/null || true
        echo "$name" >>"$work/workloads"
    done
    for src in "$guest_src"/workloads/*.sh; do
        [ -e "$src" ] || continue
        name=$(basename "$src" .sh)
        install -m 755 "$src" "$root/opt/vsched/bin/$name"
        echo "$name" >>"$work/workloads"
    done
}

build_tools() {
    local src name
    for src in "$guest_src"/tools/*.c; do
        name=$(basename "$src" .c)
        gcc "${CFLAGS[@]}" -o "$root/usr/bin/$name" "$src" || die "compiling $src failed"
        strip "$root/usr/bin/$name" 2>/dev/null || true
    done
}

install_extras() {
    local x name builtin
    builtin=" noop true false hackbench panic hang shell $(tr '\n' ' ' <"$work/workloads")"
    : >"$work/extras"
    for x in "$@"; do
        name=$(basename "$x")
        case "$builtin" in
        *" $name "*) die "--extra $x: name '$name' clashes with a built-in workload" ;;
        esac
        if ldd "$x" >/dev/null 2>&1; then
            log "note: $name is dynamically linked; copying its libraries too"
            copy_with_libs "$root" "$x" "opt/extra/$name"
        else
            cp "$x" "$root/opt/extra/$name"
        fi
        chmod 755 "$root/opt/extra/$name"
        echo "$name" >>"$work/extras"
    done
}

mkdir -p "$root/opt/vsched/bin" "$root/usr/bin" "$root/opt/extra"
build_workloads
build_tools
install_extras "$@"
