"""Fixtures shared by the integration tests: the emulator and the guest image.

QEMU: $VSCHED_QEMU, default build/qemu-system-x86_64 (`make` builds it).  A
missing emulator fails the tests: they never skip.
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

import vsched_vm  # noqa: E402


@pytest.fixture(scope="session")
def qemu():
    path = os.environ.get("VSCHED_QEMU") or vsched_vm.DEFAULT_QEMU
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("QEMU binary %s not built (run make, or set VSCHED_QEMU)" % path)
    return path


@pytest.fixture(scope="session")
def image_dir():
    """The test guest, (re)built by scripts/guest/build-image.sh (idempotent)."""
    out = os.environ.get("VSCHED_IMAGE") or os.path.join(REPO, "build", "guest")
    r = subprocess.run([os.path.join(REPO, "scripts", "guest", "build-image.sh"), out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, "build-image.sh failed:\n" + r.stdout
    return out
