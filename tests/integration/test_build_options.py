"""A QEMU configured --disable-vsched, and the x86_64 linux-user target.

The vsched meson option (default on) builds the scheduler; without it the
hook sites link against accel/vsched/vsched-stubs.c and need no C++
compiler, and linux-user targets use the same stubs.  Both are built by
scripts/build-qemu.sh (VSCHED_QEMU_VARIANT=novsched and =user, each in its
own build directory; novsched is mostly ccache hits after the main build).
"""
import os
import subprocess
import tempfile

import pytest

from conftest import REPO
import vsched_vm

NOVSCHED = os.path.join(REPO, "build", "qemu-novsched-build")
USER = os.path.join(REPO, "build", "qemu-user-build")
NOT_BUILT = "vsched is not built into this QEMU (it was configured with --disable-vsched)"


def build_variant(variant, target, build_dir):
    env = dict(os.environ, VSCHED_QEMU_VARIANT=variant)
    r = subprocess.run([os.path.join(REPO, "scripts", "build-qemu.sh"), target], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, "building the %s variant failed:\n%s" % (variant, r.stdout[-4000:])
    return os.path.join(build_dir, target)


@pytest.fixture(scope="module")
def novsched():
    return {"system": build_variant("novsched", "qemu-system-x86_64", NOVSCHED)}


@pytest.fixture(scope="module")
def user():
    return build_variant("user", "qemu-x86_64", USER)


def test_configured_without_a_cpp_compiler(novsched):
    """The build ran no C++ compile: vsched is the only C++ in the tree."""
    with open(os.path.join(NOVSCHED, "build.ninja")) as f:
        ninja = f.read()
    assert "vsched/core" not in ninja
    assert "cpp_COMPILER" not in ninja


def test_vcpu_sched_property_does_not_exist(novsched):
    r = subprocess.run([novsched["system"], "-accel", "tcg,vcpu-sched=on", "-M", "none",
                        "-display", "none"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "vcpu-sched" in r.stderr and "not found" in r.stderr, r.stderr


def test_accel_help_still_works(novsched):
    r = subprocess.run([novsched["system"], "-accel", "tcg,help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "thread=" in r.stdout
    assert "vcpu-sched" not in r.stdout


def test_monitor_says_vsched_is_not_built(novsched):
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "qmp.sock")
        proc = subprocess.Popen([novsched["system"], "-M", "none", "-display", "none",
                                 "-accel", "tcg", "-qmp", "unix:%s,server=on,wait=off" % sock],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            qmp = vsched_vm.QMP(sock, timeout=30)
            with pytest.raises(vsched_vm.QMPError, match="not built into this QEMU"):
                qmp.execute("query-vsched")
            out = qmp.execute("human-monitor-command", **{"command-line": "info vsched"})
            assert out.strip() == NOT_BUILT
            qmp.execute("quit")
            qmp.close()
        finally:
            proc.wait(timeout=30)


def test_linux_user_target_links_and_runs(user):
    """The x86_64 linux-user emulator runs a host program (hooks: stubs)."""
    r = subprocess.run([user, "-L", "/", "/bin/echo", "user", "mode"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "user mode\n"
