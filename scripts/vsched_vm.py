#!/usr/bin/python3
"""Boot the vsched test guest under QEMU and collect its result.

Library use::

    from vsched_vm import VM
    res = VM(smp=8, workload="ipistorm", accel="tcg,thread=multi").run(timeout=120)
    print(res.status, res.reason, res.guest_seconds, res.wall_seconds)

CLI::

    scripts/vsched_vm.py -w ipistorm --smp 8 [--accel ACCEL] [--json]

The guest (scripts/guest/build-image.sh, tests/guest/init) prints one line
``VSCHED-RESULT {json}`` and powers off. A run is "ok" only when that line
says status ok and the guest log shows no kernel failure (panic, soft lockup,
RCU stall, hung task, BUG, Oops). Python 3 standard library only.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_QEMU = os.path.join(REPO, "build", "qemu-system-x86_64")
DEFAULT_IMAGE = os.path.join(REPO, "build", "guest")
DEFAULT_ACCEL = "tcg,thread=multi"
# Runs on instruction counts (-icount, time=virtual) pin every other input
# the guest can see: the RTC starts at a fixed date and ticks on the
# virtual clock, and the guest's RDRAND/RDSEED stream is seeded.
VTIME_ICOUNT = "shift=0,sleep=off"
VTIME_RTC = "base=2020-01-01T00:00:00,clock=vm"
VTIME_SEED = 1

RESULT_RE = re.compile(r"VSCHED-RESULT (\{.*\})\s*$", re.M)

# Kernel failure signatures, as (reason, regex). The earliest match in the log
# is the reported reason.
FAILURE_PATTERNS = [
    ("panic", re.compile(r"Kernel panic - not syncing")),
    ("soft lockup", re.compile(r"soft lockup")),
    ("hard lockup", re.compile(r"hard LOCKUP|NMI watchdog: Watchdog detected hard")),
    ("rcu stall", re.compile(r"rcu_(sched|preempt) self-detected stall|"
                             r"rcu: INFO: |detected stalls on CPUs|RCU stall")),
    ("hung task", re.compile(r"hung_task|blocked for more than \d+ seconds")),
    ("BUG", re.compile(r"\bBUG: ")),
    ("Oops", re.compile(r"\bOops: ")),
]


def find_failure(text):
    """Return (reason, line) for the earliest kernel failure line in text, or (None, None).

    Within one line the most specific pattern wins ("BUG: soft lockup" is a
    soft lockup, not a BUG)."""
    for line in text.splitlines():
        for reason, rx in FAILURE_PATTERNS:
            if rx.search(line):
                return reason, line.strip()
    return None, None


def guest_facts(text):
    """Facts from a guest log (serial console): x2APIC mode, clocksource, boot time."""
    facts = {"x2apic": "off", "x2apic_enabled": False, "clocksource": None,
             "cpus_brought_up": None, "kernel": None}
    if re.search(r"x2apic enabled|Enabled x2apic", text):
        facts["x2apic_enabled"] = True
        facts["x2apic"] = "enabled"
    if re.search(r"x2apic_phys|physical x2apic", text):
        facts["x2apic"] = "physical"
    if re.search(r"x2apic_cluster|cluster x2apic", text):
        facts["x2apic"] = "cluster"
    cs = re.findall(r"clocksource: Switched to clocksource (\S+)", text)
    if cs:
        facts["clocksource"] = cs[-1]
    m = re.search(r"smp: Brought up \d+ nodes?, (\d+) CPUs?", text)
    if m:
        facts["cpus_brought_up"] = int(m.group(1))
    m = re.search(r"Linux version (\S+)", text)
    if m:
        facts["kernel"] = m.group(1)
    m = re.search(r"\[\s*(\d+\.\d+)\] Run /init as init process", text)
    facts["init_at"] = float(m.group(1)) if m else None
    return facts


def read_facts(log_path):
    with open(log_path, "r", errors="replace") as f:
        return guest_facts(f.read())


class QMPError(Exception):
    pass


class QMP:
    """Minimal QMP client over a unix socket. Events are collected in .events."""

    def __init__(self, path, timeout=10.0):
        self.path = path
        self.events = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise QMPError("QMP socket %s not available" % path)
                time.sleep(0.05)
        self.rfile = self.sock.makefile("r", encoding="utf-8")
        self.greeting = self._recv()
        if "QMP" not in self.greeting:
            raise QMPError("bad QMP greeting: %r" % self.greeting)
        self.execute("qmp_capabilities")

    def _recv(self):
        line = self.rfile.readline()
        if not line:
            raise QMPError("QMP connection closed")
        return json.loads(line)

    def execute(self, cmd, **args):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.sock.sendall((json.dumps(msg) + "\n").encode())
        while True:
            resp = self._recv()
            if "event" in resp:
                self.events.append(resp)
                continue
            if "error" in resp:
                raise QMPError("%s: %s" % (cmd, resp["error"].get("desc", resp["error"])))
            return resp.get("return")

    def close(self):
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass


class Result:
    """Outcome of one VM run."""

    def __init__(self):
        self.status = "failed"       # "ok" or "failed"
        self.reason = None           # None when ok; see FAILURE_PATTERNS and VM.wait
        self.guest_seconds = None    # workload time measured in the guest
        self.wall_seconds = None     # host wall time from QEMU start to end
        # host seconds from the guest's "vsched: workload=" line to its
        # result line (the workload's host cost, boot excluded; 50 ms polls)
        self.host_workload_seconds = None
        # CPU seconds QEMU used (user + system, all threads), read from /proc
        # while it runs (the last 50 ms poll before it exits): the host cost
        # of a run whatever else loads the host
        self.cpu_seconds = None
        self.boot_cpu_seconds = None     # cpu_seconds at the "workload=" line
        self.result = None           # parsed VSCHED-RESULT JSON
        self.log_path = None
        self.exit_code = None        # QEMU's exit code (None if killed by us)
        self.failure_line = None     # the log line that made the run fail
        self.facts = {}              # guest_facts() of the log
        self.qemu_stderr = ""

    @property
    def ok(self):
        return self.status == "ok"

    def to_dict(self):
        return {
            "status": self.status, "reason": self.reason,
            "guest_seconds": self.guest_seconds, "wall_seconds": self.wall_seconds,
            "host_workload_seconds": self.host_workload_seconds,
            "cpu_seconds": self.cpu_seconds, "boot_cpu_seconds": self.boot_cpu_seconds,
            "result": self.result, "log_path": self.log_path,
            "exit_code": self.exit_code, "failure_line": self.failure_line,
            "facts": self.facts, "qemu_stderr": self.qemu_stderr,
        }

    def summary(self):
        r = self.result or {}
        parts = ["%s%s" % (self.status, "" if self.ok else " (%s)" % self.reason)]
        if r:
            parts.append("workload=%s vcpus=%s" % (r.get("workload"), r.get("vcpus")))
        if self.guest_seconds is not None:
            parts.append("guest %.3f s" % self.guest_seconds)
        if self.wall_seconds is not None:
            parts.append("wall %.1f s" % self.wall_seconds)
        if r.get("boot_seconds") is not None:
            parts.append("boot %.2f s" % r["boot_seconds"])
        if r.get("checksum"):
            parts.append("checksum %s" % r["checksum"])
        if self.facts.get("x2apic"):
            parts.append("x2apic %s" % self.facts["x2apic"])
        parts.append("log %s" % self.log_path)
        return ", ".join(parts)


def _image_files(image_dir):
    manifest = os.path.join(image_dir, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            m = json.load(f)
        return os.path.join(image_dir, m["kernel"]), os.path.join(image_dir, m["initrd"])
    for k in ("vmlinux", "vmlinuz"):
        if os.path.exists(os.path.join(image_dir, k)):
            return os.path.join(image_dir, k), os.path.join(image_dir, "initramfs.cpio")
    return os.path.join(image_dir, "vmlinux"), os.path.join(image_dir, "initramfs.cpio")


def encode_args(args):
    """Encode workload arguments for vsched.args= (',' separates, %XX escapes)."""
    if isinstance(args, str):
        args = shlex.split(args)
    out = []
    for a in args:
        out.append("".join(c if c.isalnum() or c in "-_./=:@" else "%%%02X" % ord(c)
                           for c in a))
    return ",".join(out)


class VM:
    """One QEMU process running the vsched test guest.

    Every instance has its own temporary directory (serial log, QMP socket,
    QEMU stderr), so several VMs can run at once.
    """

    def __init__(self, workload="ipistorm", smp=4, accel=DEFAULT_ACCEL, qemu=None,
                 kernel=None, initrd=None, image_dir=None, memory=None, args=None,
                 size=None, threads=None, append="", extra_args=(), quiet=False,
                 machine="q35", cpu="max", iommu=True, log_path=None, workdir=None,
                 interactive=False, icount=None, seed=None):
        self.qemu = qemu or os.environ.get("VSCHED_QEMU") or DEFAULT_QEMU
        image_dir = image_dir or os.environ.get("VSCHED_IMAGE") or DEFAULT_IMAGE
        k, i = _image_files(image_dir)
        self.kernel = kernel or k
        self.initrd = initrd or i
        self.workload = workload
        self.smp = int(smp)
        self.accel = accel
        self.memory = memory or max(256, 192 + 32 * self.smp)
        self.args = args
        self.size = size
        self.threads = threads
        self.append = append
        self.extra_args = list(extra_args)
        self.quiet = quiet
        self.machine = machine
        self.cpu = cpu
        self.iommu = iommu
        self.interactive = interactive
        self.icount = icount        # e.g. VTIME_ICOUNT; pins -rtc and -seed too
        self.seed = VTIME_SEED if icount and seed is None else seed
        self.workdir = workdir or tempfile.mkdtemp(prefix="vsched-vm-")
        os.makedirs(self.workdir, exist_ok=True)
        self.log_path = log_path or os.path.join(self.workdir, "serial.log")
        self.qmp_path = os.path.join(self.workdir, "qmp.sock")
        self.stderr_path = os.path.join(self.workdir, "qemu.stderr")
        self.proc = None
        self._qmp = None
        self._t0 = None

    # ---------------------------------------------------------------- command
    def kernel_cmdline(self):
        # no_timer_check: the early IO-APIC timer test fails spuriously when
        # the host is busy (a TCG vCPU can outrun the main loop thread).
        parts = ["console=ttyS0", "tsc=reliable", "no_timer_check", "panic=-1"]
        if self.quiet:
            parts.append("quiet")
        parts.append("vsched.workload=%s" % self.workload)
        if self.args:
            parts.append("vsched.args=%s" % encode_args(self.args))
        if self.size:
            parts.append("vsched.size=%s" % self.size)
        if self.threads:
            parts.append("vsched.threads=%d" % int(self.threads))
        if self.icount:
            # With MONITOR/MWAIT (-cpu max) and more than one vCPU, QEMU
            # turns an idle MWAIT into PAUSE: the vCPU never halts, so idle
            # time cannot be skipped.
            parts.append("idle=halt")
        if self.append:
            parts.append(self.append)
        return " ".join(parts)

    def command(self):
        cmd = [self.qemu, "-M", self.machine, "-cpu", self.cpu]
        if self.iommu and self.machine.startswith("q35"):
            cmd += ["-device", "intel-iommu,intremap=on,eim=on"]
        cmd += ["-nodefaults", "-display", "none", "-no-reboot",
                "-L", "/usr/share/seabios", "-L", "/usr/share/qemu",
                "-smp", str(self.smp), "-m", str(self.memory),
                "-accel", self.accel,
                "-kernel", self.kernel, "-initrd", self.initrd,
                "-append", self.kernel_cmdline(),
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if self.icount:
            cmd += ["-icount", self.icount, "-rtc", VTIME_RTC]
        if self.seed is not None:
            cmd += ["-seed", str(self.seed)]
        if self.interactive:
            cmd += ["-serial", "mon:stdio"]
        else:
            cmd += ["-serial", "file:%s" % self.log_path]
        return cmd + self.extra_args

    # ---------------------------------------------------------------- lifecycle
    def start(self):
        for f in (self.kernel, self.initrd):
            if not os.path.exists(f):
                raise FileNotFoundError("%s missing: run scripts/guest/build-image.sh" % f)
        if not (os.path.isfile(self.qemu) and os.access(self.qemu, os.X_OK)):
            raise FileNotFoundError("QEMU binary %s not found (set --qemu or VSCHED_QEMU)"
                                    % self.qemu)
        open(self.log_path, "w").close()
        self._t0 = time.monotonic()
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                self.command(), stdin=None if self.interactive else subprocess.DEVNULL,
                stdout=None if self.interactive else subprocess.DEVNULL, stderr=err,
                start_new_session=not self.interactive)
        return self

    @property
    def qmp(self):
        """QMP connection (opened on first use)."""
        if self._qmp is None:
            self._qmp = QMP(self.qmp_path)
        return self._qmp

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._qmp:
            self._qmp.close()
            self._qmp = None

    def read_log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for_workload(self, timeout=120.0, settle=1.0):
        """Until the guest has booted and started its workload, plus settle seconds.

        Raises RuntimeError if QEMU exits or the guest does not get there in time.
        """
        deadline = time.monotonic() + timeout
        while "vsched: workload=" not in self.read_log():
            if self.proc.poll() is not None:
                raise RuntimeError("QEMU exited (%s) before the workload started"
                                   % self.proc.returncode)
            if time.monotonic() > deadline:
                raise RuntimeError("the workload did not start within %.0f s" % timeout)
            time.sleep(0.1)
        time.sleep(settle)

    def wait(self, timeout=300.0, poweroff_grace=15.0, stop_on_failure=True):
        """Wait for the result line, QEMU's exit, or the timeout; return a Result.

        stop_on_failure: kill QEMU as soon as the log shows a panic (the guest
        would reboot/exit anyway); other failures let the workload go on.
        """
        res = Result()
        res.log_path = self.log_path
        deadline = self._t0 + timeout
        result_seen_at = None
        workload_at = None
        timed_out = False
        pos = 0
        text = ""
        while True:
            cpu = self.cpu_seconds()
            if cpu is not None:
                res.cpu_seconds = cpu
            rc = self.proc.poll()
            chunk = self._read_from(pos)
            if chunk:
                text += chunk
                pos += len(chunk.encode("utf-8", errors="surrogateescape"))
            if workload_at is None and "vsched: workload=" in text:
                workload_at = time.monotonic()
                res.boot_cpu_seconds = res.cpu_seconds
            if result_seen_at is None and RESULT_RE.search(text):
                result_seen_at = time.monotonic()
                if workload_at is not None:
                    res.host_workload_seconds = result_seen_at - workload_at
            if rc is not None:
                break
            now = time.monotonic()
            if result_seen_at is not None and now - result_seen_at > poweroff_grace:
                break   # result printed but no power-off: still take it
            if stop_on_failure and result_seen_at is None and "Kernel panic - not syncing" in text:
                time.sleep(0.5)   # the rest of the panic message
                if self.proc.poll() is None:
                    break
            if now > deadline:
                timed_out = True
                break
            time.sleep(0.05)
        res.wall_seconds = time.monotonic() - self._t0
        self.kill()
        res.exit_code = self.proc.returncode if not timed_out else None
        text = self.read_log()
        try:
            with open(self.stderr_path, "r", errors="replace") as f:
                res.qemu_stderr = f.read()[-4000:]
        except OSError:
            pass
        res.facts = guest_facts(text)
        for line in text.splitlines():
            m = RESULT_RE.search(line)
            if m:
                try:
                    res.result = json.loads(m.group(1))
                except ValueError:
                    res.result = {"unparsed": m.group(1)}
                break
        if res.result and isinstance(res.result.get("seconds"), (int, float)):
            res.guest_seconds = float(res.result["seconds"])

        failure, line = find_failure(text)
        if failure:
            res.reason, res.failure_line = failure, line
        elif res.result is not None:
            if res.result.get("status") == "ok":
                res.status = "ok"
            elif res.result.get("error"):
                res.reason = res.result["error"]
            else:
                res.reason = "workload exit %s" % res.result.get("exit")
        elif timed_out:
            res.reason = "timeout"
        elif res.exit_code not in (0, None):
            res.reason = "qemu exit code %d" % res.exit_code
        else:
            res.reason = "no result line"
        return res

    def cpu_seconds(self):
        """QEMU's CPU time so far (utime + stime of /proc/PID/stat), or None."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def _read_from(self, pos):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(pos)
                return f.read().decode("utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return ""

    def run(self, timeout=300.0, **kw):
        self.start()
        try:
            return self.wait(timeout=timeout, **kw)
        finally:
            self.kill()

    def cleanup(self):
        """Remove the temporary directory (including the log)."""
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def main(argv=None):
    p = argparse.ArgumentParser(description="Run a vsched guest workload under QEMU.")
    p.add_argument("-w", "--workload", default="ipistorm",
                   help="ipistorm, spin, hackbench, noop, panic, hang, shell, or an --extra name")
    p.add_argument("-a", "--args", default=None, help="workload arguments (one string)")
    p.add_argument("--size", choices=("small", "large"), default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--smp", type=int, default=4)
    p.add_argument("-m", "--memory", type=int, default=None, help="MiB")
    p.add_argument("--accel", default=DEFAULT_ACCEL)
    p.add_argument("--qemu", default=None, help="QEMU binary (env VSCHED_QEMU)")
    p.add_argument("--image", default=None, help="image dir (env VSCHED_IMAGE; build/guest)")
    p.add_argument("--append", default="", help="extra kernel command line")
    p.add_argument("--quiet", action="store_true", help="boot with 'quiet'")
    p.add_argument("--no-iommu", action="store_true", help="no intel-iommu (no x2APIC)")
    p.add_argument("--icount", default=None, metavar="OPTS",
                   help="-icount OPTS (e.g. %s for time=virtual); also pins "
                        "-rtc %s and -seed" % (VTIME_ICOUNT, VTIME_RTC))
    p.add_argument("--seed", type=int, default=None,
                   help="-seed N (default %d with --icount)" % VTIME_SEED)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--log", default=None, help="serial log path (default: in a temp dir)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--show-command", action="store_true", help="print the QEMU command")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="serial console on stdio (for -w shell)")
    p.add_argument("extra", nargs="*", help="extra QEMU arguments (after --)")
    a = p.parse_args(argv)

    vm = VM(workload="shell" if a.interactive and a.workload == "ipistorm" else a.workload,
            smp=a.smp, accel=a.accel, qemu=a.qemu, image_dir=a.image, memory=a.memory,
            args=a.args, size=a.size, threads=a.threads, append=a.append,
            extra_args=a.extra, quiet=a.quiet, iommu=not a.no_iommu, log_path=a.log,
            interactive=a.interactive, icount=a.icount, seed=a.seed)
    if a.show_command:
        print(" ".join(shlex.quote(c) for c in vm.command()), file=sys.stderr)
    if a.interactive:
        vm.start()
        try:
            return vm.proc.wait()
        except KeyboardInterrupt:
            vm.kill()
            return 130
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        res = vm.run(timeout=a.timeout)
    except FileNotFoundError as e:
        print("vsched_vm: %s" % e, file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(res.to_dict(), indent=2, sort_keys=True))
    else:
        print(res.summary())
        if not res.ok and res.failure_line:
            print("  " + res.failure_line)
        if res.qemu_stderr.strip() and res.exit_code not in (0, None):
            print("  qemu: " + res.qemu_stderr.strip().splitlines()[-1])
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
