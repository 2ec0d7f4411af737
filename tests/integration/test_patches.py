"""patches/10.0/ is canonical `git format-patch` output (scripts/regen-patches.sh).

The check exports the patches as commits over the pristine files they touch
and formats them again; any hand edit that git would not reproduce (a
missing header, a changed subject layout, a stray line) fails here with the
command that fixes it.
"""
import os
import subprocess

from conftest import REPO

SCRIPT = os.path.join(REPO, "scripts", "regen-patches.sh")


def run(*args, **kw):
    return subprocess.run([SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300, **kw)


def test_patches_are_canonical_format_patch_output():
    r = run("check")
    assert r.returncode == 0, r.stdout


def test_every_patch_has_a_mail_header():
    d = os.path.join(REPO, "patches", "10.0")
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name)) as f:
            head = f.read(4096)
        assert head.startswith("From 0000000000000000000000000000000000000000 "), name
        assert "\nSubject: [PATCH] " in head, name


def test_a_hand_edited_patch_is_caught(tmp_path):
    """Copy the repo's patches, drop one header line, and the check fails."""
    import shutil
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, repo / "scripts")
    shutil.copy(os.path.join(REPO, "scripts", "qemu-pin.sh"), repo / "scripts")
    shutil.copytree(os.path.join(REPO, "patches"), repo / "patches")
    victim = sorted((repo / "patches" / "10.0").iterdir())[0]
    text = victim.read_text().replace("\nDate: ", "\nX-Date: ", 1)
    victim.write_text(text)
    env = dict(os.environ, VSCHED_QEMU_PRISTINE=os.path.join(REPO, "build", "qemu-pristine"))
    r = subprocess.run([str(repo / "scripts" / "regen-patches.sh"), "check"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert r.returncode != 0
    assert "not canonical" in r.stdout
