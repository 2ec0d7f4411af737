"""vCPU hotplug and unplug under the slot scheduler (a q35 guest, -smp 2,maxcpus=4).

device_add gives the new vCPU pool ids (the VM reserves ids for its present
vCPUs only); device_del (an ACPI eject the guest kernel carries out on its
own) makes the scheduler forget the vCPU before QEMU frees it: it holds no
slot, takes no queue place, and the VM goes on with every slot.  The
guest onlines a hot-added CPU itself (vsched.online_hotplug=1: a uevent
handler in the guest init), so the new vCPU runs guest code on a slot
before it is unplugged.
"""
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from vsched_vm import VM  # noqa: E402


class HotplugVM(VM):
    """The test VM with two vCPUs present and room for four."""

    def command(self):
        cmd = super().command()
        cmd[cmd.index("-smp") + 1] = "2,maxcpus=4"
        return cmd


def counter(info, name):
    return next(c["value"] for c in info["counters"] if c["name"] == name)


def own_member(info):
    return next(m for m in info["pool"]["members"] if m["self"])


def free_cpu_slot(vm):
    """A hotpluggable CPU slot nobody uses: (type, props)."""
    for c in vm.qmp.execute("query-hotpluggable-cpus"):
        if "qom-path" not in c:
            return c["type"], c["props"]
    raise AssertionError("no free CPU slot for device_add")


def cpu_present(vm, dev_id):
    return any(c.get("qom-path", "").endswith("/" + dev_id)
               for c in vm.qmp.execute("query-hotpluggable-cpus"))


def wait_until(what, cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def vcpu(info, index):
    """The scheduler's entry for vCPU index, None when it has none."""
    return next((v for v in info["vcpus"] if v["cpu-index"] == index), None)


def holders(info):
    """cpu-index -> slot for this VM's vCPUs that hold a slot now."""
    return {v["cpu-index"]: v["slot"] for v in info["vcpus"] if v["slot"] >= 0}


def assert_nothing_held(vm):
    """Stopped, the VM holds no slot and no queue place: its vCPUs give them
    back when they pause.  A slot or a queue place left to an unplugged
    vCPU (no thread, nothing gives it back) shows here.  query-vsched reads
    vCPUs and pool apart, so the check needs a VM that stands still."""
    vm.qmp.execute("stop")
    info = vm.qmp.execute("query-vsched")
    me, pool = own_member(info), info["pool"]
    assert (me["slots-held"], me["queued"]) == (0, 0), pool
    assert (pool["free-slots"], pool["queue-len"]) == (pool["slots"], 0), pool
    assert holders(info) == {}, info["vcpus"]
    vm.qmp.execute("cont")


def poll_vsched(vm, what, cond, timeout):
    """query-vsched until cond(info) holds; returns that info."""
    found = []

    def check():
        info = vm.qmp.execute("query-vsched")
        if cond(info):
            found.append(info)
        return bool(found)
    wait_until(what, check, timeout)
    return found[0]


# cpuloop -u: three unpinned CPU-bound threads on a 2-vCPU guest, so the
# guest kernel moves one onto a hot-added vCPU as soon as it is online, and
# after the unplug both remaining vCPUs stay busy.  The size keeps the loop
# running through the plug and unplug (about 8 s on an idle host; the
# steps take about 2 s).
BUSY = "-u -t 3 -n %d" % 800000000


def test_vcpu_plug_and_unplug_on_a_shared_pool(qemu, image_dir, tmp_path):
    """The hot-added vCPU is onlined by the guest (vsched.online_hotplug=1),
    runs guest code on a slot, and device_del gives its slot and queue
    place back: the scheduler no longer lists it, the stopped VM holds
    nothing, and both slots are held by the two vCPUs left."""
    pool = "test-hotplug-%d" % os.getpid()
    accel = "tcg,thread=multi,vcpu-sched=on,pcpus=2,pool=%s,directed-yield=ipi" % pool
    vm = HotplugVM(qemu=qemu, image_dir=image_dir, workdir=str(tmp_path), smp=2,
                   accel=accel, workload="cpuloop", args=BUSY,
                   append="vsched.online_hotplug=1")
    try:
        with vm:
            vm.start()
            vm.wait_for_workload(settle=0.3)
            info = vm.qmp.execute("query-vsched")
            # Pool ids for the two present vCPUs, not for maxcpus.
            assert own_member(info)["vcpus"] == 2, info["pool"]

            kind, props = free_cpu_slot(vm)
            vm.qmp.execute("device_add", driver=kind, id="hp", **props)
            info = vm.qmp.execute("query-vsched")
            assert counter(info, "vcpu_plugs") == 1
            grown = own_member(info)["vcpus"]
            assert grown >= 3, info["pool"]  # up to the new vCPU's index
            new = grown - 1     # the run grows to the new cpu_index + 1

            # The guest onlines it, the kernel gives it a thread: it runs
            # guest code on one of the pool's slots.
            wait_until("the guest never onlined the new vCPU",
                       lambda: "vsched: online cpu" in vm.read_log(), 60)
            info = poll_vsched(vm, "the new vCPU never held a slot",
                               lambda i: new in holders(i), 30)
            assert vcpu(info, new)["state"] == "running", info["vcpus"]

            vm.qmp.execute("device_del", id="hp")
            # The guest kernel offlines and ejects the CPU (ACPI) by itself.
            wait_until("the guest never ejected the vCPU",
                       lambda: not cpu_present(vm, "hp"), 60)
            # Unrealize drops the BQL while it joins the vCPU thread: the
            # slot list can show the eject before the unplug hook ran.
            wait_until("the unplug hook never ran",
                       lambda: counter(vm.qmp.execute("query-vsched"), "vcpu_unplugs") == 1, 30)
            info = vm.qmp.execute("query-vsched")
            assert vcpu(info, new) is None, info["vcpus"]
            assert [v["cpu-index"] for v in info["vcpus"]] == [0, 1], info["vcpus"]
            assert info["pool"]["slots"] == 2
            assert_nothing_held(vm)
            # The VM goes on with every slot: both busy vCPUs hold one at
            # once (a slot left to the unplugged vCPU would never be free).
            info = poll_vsched(vm, "the two vCPUs left never held both slots",
                               lambda i: sorted(holders(i).values()) == [0, 1], 30)
            # Its ids stay reserved for a later plug of the same slot.
            assert own_member(info)["vcpus"] == grown
            # Plugged again: the same number, the same ids.
            vm.qmp.execute("device_add", driver=kind, id="hp2", **props)
            assert counter(vm.qmp.execute("query-vsched"), "vcpu_plugs") == 2
            assert own_member(vm.qmp.execute("query-vsched"))["vcpus"] == grown
            # The workload ends normally.
            r = vm.wait(timeout=300)
            assert r.ok, r.summary()
    finally:
        path = "/dev/shm/vsched-%d-%s" % (os.getuid(), pool)
        if os.path.exists(path):
            os.unlink(path)


def test_vcpu_plug_refused_when_the_pool_has_no_id_for_it(qemu, image_dir, tmp_path):
    """A second VM takes the ids after the first one's: the first VM's
    hotplug is refused with the scheduler's message, and the VM runs on."""
    pool = "test-hotplug-full-%d" % os.getpid()
    accel = "tcg,thread=multi,vcpu-sched=on,pcpus=2,pool=%s" % pool
    vms = [HotplugVM(qemu=qemu, image_dir=image_dir, workdir=str(tmp_path / str(i)), smp=2,
                     accel=accel, workload="ipistorm", args="-r 100") for i in range(2)]
    try:
        with vms[0], vms[1]:
            vms[0].start()
            vms[0].wait_for_workload(settle=0.1)
            # A VM is in the pool once its QMP socket answers; waiting for
            # its boot too would let the first VM's workload end first.
            vms[1].start()
            vms[1].qmp.execute("query-status")
            kind, props = free_cpu_slot(vms[0])
            try:
                vms[0].qmp.execute("device_add", driver=kind, id="hp", **props)
                raise AssertionError("device_add was accepted")
            except Exception as e:  # QMPError
                assert "has no id for vCPU" in str(e), e
                assert "another VM's" in str(e), e
                assert "free pool ids" in str(e), e
            info = vms[0].qmp.execute("query-vsched")
            assert counter(info, "vcpu_plugs") == 0
            for vm in vms:
                r = vm.wait(timeout=300)
                assert r.ok, r.summary()
    finally:
        path = "/dev/shm/vsched-%d-%s" % (os.getuid(), pool)
        if os.path.exists(path):
            os.unlink(path)
