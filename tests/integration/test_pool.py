"""Several VMs on one shared slot pool (-accel tcg,...,pool=NAME).

Real QEMU processes: fairness across VMs, a VM killed with SIGKILL, pool
files that must be refused untouched, and start/kill cycles against a
long-running VM.
"""
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from vsched_vm import QMP, VM  # noqa: E402


def pool_name(tag):
    return "test-%s-%d" % (tag, os.getpid())


def pool_path(name):
    return "/dev/shm/vsched-%d-%s" % (os.getuid(), name)


@pytest.fixture
def clean_pool():
    names = []

    def make(tag):
        names.append(pool_name(tag))
        return names[-1]
    yield make
    for n in names:
        if os.path.exists(pool_path(n)):
            os.unlink(pool_path(n))


def pool_vm(qemu, image_dir, tmp_path, pool, i, pcpus=2, **kw):
    d = tmp_path / ("vm%d" % i)
    d.mkdir()
    stats = d / "stats.json"
    accel = ("tcg,thread=multi,vcpu-sched=on,pcpus=%d,pool=%s,directed-yield=ipi,"
             "stats-file=%s" % (pcpus, pool, stats))
    kw.setdefault("workload", "ipistorm")
    kw.setdefault("args", "-r 2")
    return VM(qemu=qemu, image_dir=image_dir, workdir=str(d), smp=4, accel=accel, **kw), stats


def run_together(vms, timeout=400):
    for vm, _ in vms:
        vm.start()
    return [vm.wait(timeout=timeout) for vm, _ in vms]


def test_three_vms_share_two_slots_fairly(qemu, image_dir, tmp_path, clean_pool):
    pool = clean_pool("fair")
    vms = [pool_vm(qemu, image_dir, tmp_path, pool, i) for i in range(3)]
    results = run_together(vms)
    for r in results:
        assert r.ok, r.summary()
    times = []
    for _, stats in vms:
        with open(stats) as f:
            times.append(json.load(f)["pool_slot_time_ns"])
    mean = sum(times) / len(times)
    assert all(abs(t - mean) <= 0.2 * mean for t in times), times
    assert not os.path.exists(pool_path(pool)), "the last VM did not remove the pool"


def members(vm):
    return vm.qmp.execute("query-vsched")["pool"]["members"]


def test_sigkill_gives_slots_back(qemu, image_dir, tmp_path, clean_pool):
    pool = clean_pool("kill")
    vms = [pool_vm(qemu, image_dir, tmp_path, pool, i, args="-r 4") for i in range(3)]
    for vm, _ in vms:
        vm.start()
    victim, survivor = vms[0][0], vms[1][0]
    victim.wait_for_workload()
    os.kill(victim.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    while any(m["pid"] == victim.proc.pid for m in members(survivor)):
        assert time.monotonic() - killed_at < 30, "dead VM never reaped"
        time.sleep(0.01)
    print("dead VM reaped after %.0f ms" % ((time.monotonic() - killed_at) * 1000))
    pool_info = survivor.qmp.execute("query-vsched")["pool"]
    assert len(pool_info["members"]) == 2
    assert pool_info["members-reaped"] == 1
    results = [vm.wait(timeout=400) for vm, _ in vms[1:]]
    for r in results:
        assert r.ok, r.summary()
    reaped = 0
    for _, path in vms[1:]:
        with open(path) as f:
            reaped += json.load(f)["pool_members_reaped"]   # by this process
    assert reaped == 1


def start_paused(qemu, pool, tmp_path, tag, pcpus=2):
    """A VM that joins the pool but never runs guest code (-S)."""
    qmp = str(tmp_path / ("%s.qmp" % tag))
    proc = subprocess.Popen([qemu, "-M", "q35", "-smp", "2", "-display", "none",
                             "-nodefaults", "-S", "-qmp", "unix:%s,server=on,wait=off" % qmp,
                             "-accel", "tcg,vcpu-sched=on,pcpus=%d,pool=%s" % (pcpus, pool)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    return proc, qmp


def test_start_kill_cycles_leave_no_member_behind(qemu, tmp_path, clean_pool):
    pool = clean_pool("cycles")
    keeper, qmp_path = start_paused(qemu, pool, tmp_path, "keeper")
    qmp = QMP(qmp_path, timeout=30)
    try:
        def count():
            return len(qmp.execute("query-vsched")["pool"]["members"])
        for i in range(50):
            proc, _ = start_paused(qemu, pool, tmp_path, "cycle%d" % i)
            deadline = time.monotonic() + 30
            while count() != 2:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "cycle %d never joined" % i
                time.sleep(0.02)
            proc.kill()
            proc.wait()
            deadline = time.monotonic() + 30
            while count() != 1:
                assert time.monotonic() < deadline, "cycle %d never reaped" % i
                time.sleep(0.02)
        info = qmp.execute("query-vsched")["pool"]
        assert info["members-reaped"] == 50 and len(info["members"]) == 1
    finally:
        qmp.close()
        keeper.kill()
        keeper.wait()


def refused(qemu, pool, pcpus=2):
    r = subprocess.run([qemu, "-M", "q35", "-smp", "1", "-display", "none", "-nodefaults",
                        "-S", "-accel", "tcg,vcpu-sched=on,pcpus=%d,pool=%s" % (pcpus, pool)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stderr


BAD_FILES = [
    ("magic", b"\x42" * 8192, None, "is not a vsched pool"),
    ("truncated", b"\x00" * 16, None, "is truncated"),
    ("owner", b"\x42" * 8192, 65534, "is owned by uid 65534"),
]


@pytest.mark.parametrize("tag,content,uid,message", BAD_FILES)
def test_bad_pool_file_is_refused_untouched(qemu, clean_pool, tag, content, uid, message):
    pool = clean_pool("bad-" + tag)
    with open(os.open(pool_path(pool), os.O_CREAT | os.O_WRONLY, 0o600), "wb") as f:
        f.write(content)
    if uid is not None:
        os.chown(pool_path(pool), uid, uid)
    before = hashlib.sha256(open(pool_path(pool), "rb").read()).hexdigest()
    code, err = refused(qemu, pool)
    assert code == 1 and message in err, err
    assert hashlib.sha256(open(pool_path(pool), "rb").read()).hexdigest() == before


def test_pcpus_mismatch_is_refused(qemu, tmp_path, clean_pool):
    pool = clean_pool("pcpus")
    first, qmp_path = start_paused(qemu, pool, tmp_path, "first", pcpus=2)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(pool_path(pool)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        code, err = refused(qemu, pool, pcpus=3)
        assert code == 1 and "has pcpus=2, this VM asks for pcpus=3" in err, err
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("name", ["a/b", "", "x" * 65, "sp ace"])
def test_bad_pool_name_is_refused(qemu, name):
    r = subprocess.run([qemu, "-M", "none", "-display", "none", "-nodefaults",
                        "-accel", "tcg,vcpu-sched=on,pool=" + name],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "'pool'" in r.stderr, r.stderr


def test_sigterm_leaves_the_pool_cleanly(qemu, image_dir, tmp_path, clean_pool):
    """QEMU's own shutdown (SIGTERM) leaves the pool: no reaping needed."""
    pool = clean_pool("term")
    vms = [pool_vm(qemu, image_dir, tmp_path, pool, i, args="-r 4") for i in range(2)]
    for vm, _ in vms:
        vm.start()
    leaver, stayer = vms[0][0], vms[1][0]
    leaver.wait_for_workload()
    leaver.proc.terminate()
    leaver.proc.wait(timeout=120)      # a hang at exit fails here
    info = stayer.qmp.execute("query-vsched")["pool"]
    assert len(info["members"]) == 1 and info["members-reaped"] == 0, info
    res = stayer.wait(timeout=400)
    assert res.ok, res.summary()


# ------------------------------------------------------ QEMU-side slot leaks

def held_slots(info):
    """Slots held and queue places taken by this VM's vCPUs."""
    held = [v["cpu-index"] for v in info["vcpus"] if v["state"] == "running"]
    queued = [v["cpu-index"] for v in info["vcpus"] if v["state"] == "queued"]
    return held, queued


def private_vm(qemu, image_dir, tmp_path, thread, pcpus, smp=4, **kw):
    accel = "tcg,thread=%s,vcpu-sched=on,pcpus=%d,directed-yield=ipi" % (thread, pcpus)
    kw.setdefault("workload", "ipistorm")
    kw.setdefault("args", "-r 30")
    return VM(qemu=qemu, image_dir=image_dir, workdir=str(tmp_path / thread), smp=smp,
              accel=accel, **kw)


@pytest.mark.parametrize("thread", ["multi", "single"])
def test_stop_leaves_no_slot_held(qemu, image_dir, tmp_path, thread):
    """After `stop` no vCPU holds a slot or a queue place (MTTCG and RR)."""
    vm = private_vm(qemu, image_dir, tmp_path, thread, pcpus=2)
    with vm:
        vm.start()
        vm.wait_for_workload(settle=0.3)
        for i in range(10):
            vm.qmp.execute("stop")
            info = vm.qmp.execute("query-vsched")
            held, queued = held_slots(info)
            assert (held, queued) == ([], []), "stop %d: held %s, queued %s" % (i, held, queued)
            assert info["pool"]["free-slots"] == info["pool"]["slots"], info["pool"]
            vm.qmp.execute("cont")
            time.sleep(0.2)
        vm.kill()


class ResettableVM(VM):
    """The test VM without -no-reboot: a reset reboots instead of quitting."""

    def command(self):
        return [a for a in super().command() if a != "-no-reboot"]


def wait_count(vm, text, n, timeout, why):
    deadline = time.monotonic() + timeout
    while vm.read_log().count(text) < n:
        assert vm.proc.poll() is None, "QEMU exited: %s" % why
        assert time.monotonic() < deadline, "%s: %s" % (
            why, vm.qmp.execute("query-vsched")["vcpus"])
        time.sleep(0.2)


@pytest.mark.parametrize("thread", ["single", "multi"])
def test_stop_reset_cont_boots_again_with_one_slot(qemu, image_dir, tmp_path, thread):
    """A reset halts the APs wherever they were; with one slot none of them
    may keep it, or the BSP never runs again."""
    accel = "tcg,thread=%s,vcpu-sched=on,pcpus=1" % thread
    vm = ResettableVM(qemu=qemu, image_dir=image_dir, workdir=str(tmp_path / thread),
                      smp=4, accel=accel, workload="ipistorm", args="-r 30")
    with vm:
        vm.start()
        for n in range(1, 3):
            wait_count(vm, "vsched: workload=", n, 180, "workload %d never started" % n)
            time.sleep(0.3)
            vm.qmp.execute("stop")
            vm.qmp.execute("system_reset")
            vm.qmp.execute("cont")
        wait_count(vm, "vsched: workload=", 3, 180,
                   "no boot after stop + system_reset + cont")
        vm.kill()


# ---------------------------------------------------------------- stats-file

def run_and_quit(qemu, stats_file):
    """A paused QEMU with stats-file=, asked to quit over QMP; its stderr."""
    r = subprocess.run([qemu, "-M", "q35", "-smp", "1", "-display", "none", "-nodefaults",
                        "-S", "-qmp", "stdio",
                        "-accel", "tcg,vcpu-sched=on,pcpus=1,stats-file=%s" % stats_file],
                       input='{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stderr


def test_stats_file_never_replaces_a_symlink_or_fifo(qemu, tmp_path):
    target = tmp_path / "target"
    target.write_text("precious\n")
    link = tmp_path / "stats-link"
    os.symlink(target, link)
    code, err = run_and_quit(qemu, link)
    assert code == 0, err
    assert os.path.islink(link), "the symlink was replaced"
    assert target.read_text() == "precious\n"
    assert "is not a regular file (a symlink)" in err, err

    fifo = tmp_path / "stats-fifo"
    os.mkfifo(fifo)
    code, err = run_and_quit(qemu, fifo)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    assert "(a FIFO)" in err, err


def test_stats_file_regular_or_absent_is_written_whole(qemu, tmp_path):
    for name, old in (("absent", None), ("regular", "old contents\n")):
        path = tmp_path / name
        if old is not None:
            path.write_text(old)
        code, err = run_and_quit(qemu, path)
        assert code == 0, err
        assert stat.S_ISREG(os.lstat(path).st_mode)
        assert "release_stop" in json.loads(path.read_text()), path.read_text()
    assert sorted(os.listdir(tmp_path)) == ["absent", "regular"], "temp files left behind"
