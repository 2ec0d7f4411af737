# The QEMU release vsched builds on.  Sourced by scripts/fetch-qemu.sh.
# Any 10.0.x point release is accepted (Debian replaces old ones); the
# upstream tarball is the fallback for hosts without Debian's archive.
QEMU_SERIES=10.0
QEMU_DEBIAN_SUITE=trixie
QEMU_UPSTREAM_VERSION=10.0.0
QEMU_UPSTREAM_URL=https://download.qemu.org/qemu-$QEMU_UPSTREAM_VERSION.tar.xz
QEMU_UPSTREAM_SHA256=22c075601fdcf8c7b2671a839ebdcef1d4f2973eb6735254fd2e1bd0f30b3896
# Debian strips firmware blobs and the bundled meson wheel from its +ds
# tarball; these patches of Debian's own series make that tree configure.
QEMU_DEBIAN_BUILD_PATCHES="skip-unpack-edk2-blobs.patch disable-pycotap.patch"
