#!/usr/bin/env bash
# Install what building, testing and running vsched needs on Debian 12/13.
# Idempotent: a stamp keyed on this script's content skips a repeated run.
# Elsewhere (or not root) it prints the missing packages and stops.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
stamp_dir=${VSCHED_CACHE:-$here/.cache}
stamp=$stamp_dir/setup-host.$(sha256sum "$0" | cut -c1-16)

PKGS=(
    # QEMU build
    build-essential g++ ninja-build pkg-config python3 python3-venv
    libglib2.0-dev libpixman-1-dev libslirp-dev libfdt-dev zlib1g-dev
    ccache dpkg-dev xz-utils ca-certificates
    # firmware for x86 guests (Debian's QEMU source has no blobs)
    seabios ipxe-qemu qemu-system-data
    # our core: tests, benchmarks, fuzzing
    libgtest-dev libgmock-dev libbenchmark-dev clang
    # guest image, debugging, experiment
    busybox-static cpio gzip gdb python3-matplotlib python3-pytest rt-tests libc6-dev
    python3-numpy python3-scipy python3-docutils
    libvips-tools binutils
)

missing_pkgs() {
    local p
    for p in "${PKGS[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || printf '%s\n' "$p"
    done
}

meson_ok() {
    command -v meson >/dev/null 2>&1 &&
        dpkg --compare-versions "$(meson --version 2>/dev/null || echo 0)" ge 1.5.0
}

debian_codename() {
    . /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}"
}

[ -f "$stamp" ] && meson_ok && [ -z "$(missing_pkgs)" ] && exit 0

codename=$(debian_codename)
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || [ -z "$codename" ]; then
    echo "setup-host: not root on Debian; install these packages yourself:" >&2
    missing_pkgs meson | sed 's/^/  /' >&2
    meson_ok || echo "  meson >= 1.5.0 (found: $(meson --version 2>/dev/null || echo none))" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o Dpkg::Use-Pty=0 -qq "$@"; }

if [ "$codename" = bookworm ]; then
    # meson >= 1.5 for QEMU 10.0 comes from bookworm-backports.
    src=/etc/apt/sources.list.d/vsched-backports.sources
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        cat > "$src" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
fi
apt_get update
# shellcheck disable=SC2046
apt_get install --no-install-recommends $(missing_pkgs) >/dev/null
if ! meson_ok; then
    if [ "$codename" = bookworm ]; then
        apt_get install --no-install-recommends -t bookworm-backports meson >/dev/null
    else
        apt_get install --no-install-recommends meson >/dev/null
    fi
fi
meson_ok || { echo "setup-host: meson >= 1.5.0 could not be installed" >&2; exit 1; }
# libFuzzer comes with clang's runtime package, named after clang's version.
rt=libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev
dpkg-query -W -f='${Status}' "$rt" 2>/dev/null | grep -q 'install ok installed' ||
    apt_get install --no-install-recommends "$rt" >/dev/null
mkdir -p "$stamp_dir" && rm -f "$stamp_dir"/setup-host.* && touch "$stamp"
echo "setup-host: packages ready (meson $(meson --version))"
