"""gdb against a guest whose vCPUs run under vsched (4 vCPUs, 1 slot).

The real gdb attaches to QEMU's gdbstub, breaks on a kernel function the
workload calls, single-steps, reads registers on every vCPU thread, continues
and detaches; the guest must then finish its workload.  A stopped vCPU must
not keep the only slot, and a single-stepped one must not wait behind it.
"""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts"))

from vsched_vm import VM  # noqa: E402

FUNCTION = "__x64_sys_mprotect"   # ipistorm's TLB phase calls mprotect


def symbol_address(vm, name):
    """The guest prints the address from /proc/kallsyms (vsched.ksym=)."""
    m = re.search(r"VSCHED-KSYM %s ([0-9a-f]+)" % name, vm.read_log())
    assert m, "guest did not print the address of %s" % name
    return int(m.group(1), 16)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(vm, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in vm.read_log():
            return
        assert vm.proc.poll() is None, "QEMU exited early"
        time.sleep(0.2)
    raise TimeoutError(text)


def gdb_script(port, addr):
    # Generous timeouts: on a loaded 2-core host QEMU's main loop may be slow
    # to accept and answer (gdb's defaults are 15 s and 2 s).
    lines = ["set pagination off", "set confirm off", "set architecture i386:x86-64",
             "set tcp connect-timeout 120", "set remotetimeout 60",
             "target remote 127.0.0.1:%d" % port,
             "break *0x%x" % addr, "continue",
             "printf \"HIT rip=%lx\\n\", $rip",
             "stepi", "printf \"STEP rip=%lx\\n\", $rip",
             "info threads"]
    for t in range(1, 5):
        lines += ["thread %d" % t, "printf \"THREAD %d rip=%%lx rsp=%%lx\\n\", $rip, $rsp" % t]
    lines += ["delete", "detach", "quit"]
    return lines


def test_gdb_breakpoint_step_threads_detach(qemu, image_dir, tmp_path):
    port = free_port()
    vm = VM(qemu=qemu, image_dir=image_dir, workdir=str(tmp_path), smp=4,
            workload="ipistorm", args="-r 10", append="nokaslr vsched.ksym=%s" % FUNCTION,
            accel="tcg,thread=multi,vcpu-sched=on,pcpus=1,directed-yield=ipi",
            extra_args=["-gdb", "tcp:127.0.0.1:%d" % port])
    with vm:
        vm.start()
        # The guest prints the address just before its workload starts,
        # and the workload's mprotect phases pass in a second or two: stop
        # the VM at once (QMP answers in milliseconds; gdb's start-up under
        # load took longer than the whole workload once), attach while it
        # is stopped, and let gdb's continue run it into the breakpoint.
        # Ten rounds: if the stop lands after a mprotect phase, the next
        # round has another.
        wait_for(vm, "VSCHED-KSYM", 120)
        vm.qmp.execute("stop")
        addr = symbol_address(vm, FUNCTION)
        cmd = ["gdb", "-nx", "-batch"]
        for line in gdb_script(port, addr):
            cmd += ["-ex", line]
        gdb = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        out = gdb.stdout + gdb.stderr
        res = vm.wait(timeout=300)
    hit = re.search(r"HIT rip=([0-9a-f]+)", out)
    step = re.search(r"STEP rip=([0-9a-f]+)", out)
    assert hit and int(hit.group(1), 16) == addr, out
    assert step and int(step.group(1), 16) != addr, out
    threads = re.findall(r"THREAD (\d) rip=([0-9a-f]+) rsp=([0-9a-f]+)", out)
    assert [t[0] for t in threads] == ["1", "2", "3", "4"], out
    assert all(int(rsp, 16) != 0 for _, _, rsp in threads), out
    assert "Thread 1.4" in out, out
    assert res.ok, res.summary()
