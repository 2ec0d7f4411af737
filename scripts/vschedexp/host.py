"""The host, the QEMU binary and the guest image: what the runner asks of them."""

import os
import re
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def qemu_version(qemu):
    try:
        out = subprocess.run([qemu, "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=30).stdout
        return out.splitlines()[0].strip() if out else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def qemu_has_pool(qemu):
    """True when this QEMU's tcg accelerator has the pool= property."""
    try:
        out = subprocess.run([qemu, "-accel", "tcg,help"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return re.search(r"^\s*pool=", out, re.M) is not None


def qemu_policies(qemu):
    """The directed-yield values this QEMU accepts, from the property's help
    ("directed-yield=<str> - vsched: yield policy on a PAUSE spin: none,
    vanilla, ipi, ipi-prio"): the longest list of names separated by commas,
    "or" or "|". None when the binary cannot be asked or lacks the property."""
    try:
        out = subprocess.run([qemu, "-accel", "tcg,help"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_policies(out)


def parse_policies(help_text):
    m = re.search(r"^\s*directed-yield=\S*\s+-\s+(.*)$", help_text, re.M)
    if not m:
        return None
    sep = r"\s*(?:,|\bor\b|\|)\s*"
    lists = [x.group(0) for x in re.finditer(r"[a-z][a-z0-9-]*(?:%s[a-z][a-z0-9-]*)+" % sep,
                                             m.group(1))]
    if not lists:
        return None
    return tuple(dict.fromkeys(re.split(sep, max(lists, key=len))))


def git_commit():
    try:
        r = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=10)
        c = r.stdout.strip()
        if r.returncode == 0 and c:
            d = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               timeout=10).stdout
            return c + ("-dirty" if d.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def wait_for_qemu(qemu, patience):
    """The QEMU binary may be briefly missing while it is rebuilt: wait a little."""
    deadline = time.monotonic() + patience
    while not (os.path.isfile(qemu) and os.access(qemu, os.X_OK)):
        if time.monotonic() > deadline:
            return False
        time.sleep(2)
    return True


def build_image(image):
    r = subprocess.run([os.path.join(REPO, "scripts", "guest", "build-image.sh"), image],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise RuntimeError("build-image.sh failed:\n" + r.stdout[-3000:])
