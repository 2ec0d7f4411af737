#!/usr/bin/python3
"""vsched experiment runner: directed-yield policies over a matrix of VMs.

    scripts/experiment.py experiments/default.toml        # run a spec
    scripts/experiment.py --check experiments/series.toml # validate only
    scripts/experiment.py --bench                         # the benchmark matrix
    scripts/experiment.py --list experiments/ci.toml      # print the planned runs

A spec (TOML or JSON, see docs/experiment.rst) names the workloads and sizes,
VM counts, vCPUs per VM, pool slots, policies, relaxed-boost settings and
repetitions. Each *point* (workload x VM count) runs every policy variant
REPS times, A/B interleaved (rep r runs the variants rotated by r); one
*trial* starts all the VMs of the point together on one pool of slots (QEMU's
``pool=NAME``, unique per trial) and waits for all of them. Each VM is one
row, tagged with the full configuration, the QEMU version and the git commit.

Output in build/results/<run-id>/: runs.csv, runs.json (rows + spec + meta),
summary.json, table.txt, plot.png, and per VM its serial log and stats file.
A guest that times out, panics, locks up or prints no result line is a failed
row (status=failed, reason=...), never a number.

Exit status: 0 all runs ok; 1 some runs failed; 2 bad spec or setup; 3 some
points refused (e.g. shared pools without pool= support) while the rest ran ok.

Python 3.11 standard library; the plot needs Debian's python3-matplotlib.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

try:
    import tomllib
except ImportError:  # pragma: no cover - Python < 3.11
    tomllib = None

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import vsched_vm  # noqa: E402
from vschedexp import stats  # noqa: E402

# Policies when no QEMU binary can be asked (qemu_policies() asks it).
POLICIES = ("none", "vanilla", "ipi", "ipi-prio")
# relaxed-boost applies to the IPI-aware policies (ipi, ipi-prio, ipi-v2...):
# those get a "/strict" variant; the others run with it on only.
RELAXED_PREFIX = "ipi"
SIZES = ("small", "large")
# Counters shown in the table (medians per VM), in this order, when the
# results carry them (older and newer binaries name the receiver hits
# differently), see docs/experiment.rst.
TABLE_COUNTERS = ("spins_detected", "yield_strict", "yield_relaxed", "yield_receiver_hit",
                  "yield_receiver_hit_series", "yield_receiver_hit_any", "no_target",
                  "handoffs", "preemptions", "slot_wait_ns")
# Latency: the workload's region of interest when it reports one.
LATENCY_KEYS = ("roi_seconds", "hackbench_seconds", "seconds")
# Guest-side checks surfaced as columns (value "ok" expected when present).
CHECK_KEYS = ("roundtrip", "size_check")

ROW_FIELDS = [
    "run_id", "spec", "trial", "point", "workload", "size", "args", "vms", "vm_index", "vcpus",
    "pcpus", "pool_mode", "pool", "policy", "relaxed_boost", "variant", "rep", "order",
    "status", "reason", "latency_seconds", "latency_key", "guest_seconds", "boot_seconds",
    "wall_seconds", "check", "roundtrip", "size_check", "failure_line", "memory_mb",
    "threads", "timeout", "accel", "qemu", "qemu_version", "git_commit", "host", "host_cpus",
    "started_at", "log", "stats_file", "result_json",
]


class SpecError(Exception):
    """A malformed spec; the message names the field."""


# ---------------------------------------------------------------- spec
SPEC_FIELDS = {
    "name": "run name (letters, digits, - _ .)",
    "description": "free text",
    "workloads": "list of {name, size, args, threads, memory_mb}",
    "vms": "list of VM counts per point",
    "vcpus": "vCPUs per VM",
    "pcpus": "pool slots per point",
    "policies": "list of directed-yield policies (the binary's, e.g. none, vanilla, ipi)",
    "relaxed_boost": "list of booleans, for the ipi* policies",
    "variants": "explicit list of variants (none, vanilla, ipi, ipi/strict, ipi-prio, "
                "ipi-prio/strict) instead of policies x relaxed_boost",
    "repetitions": "trials per variant and point",
    "timeout": "seconds per trial",
    "pool": "shared|separate",
    "baseline": "variant the reduction is computed against",
    "compare": "more variants to compute reductions against",
    "accel_extra": "extra -accel tcg properties, e.g. slice=4ms",
    "memory_mb": "guest memory per VM (default 192 + 32 per vCPU)",
    "image": "guest image directory",
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
WORKLOAD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _int(spec, field, lo, hi, default=None):
    v = spec.get(field, default)
    if v is None:
        raise SpecError("field '%s': missing (%s)" % (field, SPEC_FIELDS.get(field, "")))
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError("field '%s': expected an integer, got %r" % (field, v))
    if not lo <= v <= hi:
        raise SpecError("field '%s': %d out of range %d..%d" % (field, v, lo, hi))
    return v


def variant_label(policy, relaxed):
    if has_relaxed(policy) and not relaxed:
        return policy + "/strict"
    return policy


def has_relaxed(policy):
    return policy.startswith(RELAXED_PREFIX)


def load_spec(path, policies=None):
    """Read a TOML or JSON spec file and return it validated (see validate_spec)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SpecError("spec %s: %s" % (path, e.strerror))
    if path.endswith(".json"):
        try:
            raw = json.loads(data)
        except ValueError as e:
            raise SpecError("spec %s: not valid JSON: %s" % (path, e))
    else:
        try:
            raw = tomllib.loads(data.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise SpecError("spec %s: not valid TOML: %s" % (path, e))
    if not isinstance(raw, dict):
        raise SpecError("spec %s: expected a table/object at the top" % path)
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return validate_spec(raw, policies)


def validate_spec(raw, policies=None):
    """Check every field; return a normalised copy. Raises SpecError naming the field.
    policies: the names the QEMU binary accepts (default POLICIES)."""
    policies = tuple(policies or POLICIES)
    if not isinstance(raw, dict):
        raise SpecError("spec: expected a table/object")
    unknown = sorted(set(raw) - set(SPEC_FIELDS) - {"_pairs"})
    if unknown:
        raise SpecError("field '%s': unknown (known fields: %s)"
                        % (unknown[0], ", ".join(sorted(SPEC_FIELDS))))
    s = {}
    name = raw.get("name", "experiment")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise SpecError("field 'name': %r is not a simple name (letters, digits, - _ .)" % (name,))
    s["name"] = name
    s["description"] = str(raw.get("description", ""))

    wl = raw.get("workloads")
    if wl is None:
        raise SpecError("field 'workloads': missing (list of {name, size})")
    if isinstance(wl, (str, dict)):
        wl = [wl]
    if not isinstance(wl, list) or not wl:
        raise SpecError("field 'workloads': expected a non-empty list")
    s["workloads"] = []
    for i, w in enumerate(wl):
        where = "workloads[%d]" % i
        if isinstance(w, str):
            w = {"name": w}
        if not isinstance(w, dict):
            raise SpecError("field '%s': expected a table {name, size, args}" % where)
        bad = sorted(set(w) - {"name", "size", "args", "threads", "memory_mb"})
        if bad:
            raise SpecError("field '%s.%s': unknown (name, size, args, threads, memory_mb)"
                            % (where, bad[0]))
        n = w.get("name")
        if not isinstance(n, str) or not WORKLOAD_RE.match(n):
            raise SpecError("field '%s.name': %r is not a workload name" % (where, n))
        size = w.get("size", "small")
        if size not in SIZES:
            raise SpecError("field '%s.size': %r is not one of %s" % (where, size, "|".join(SIZES)))
        args = w.get("args", "")
        if not isinstance(args, str):
            raise SpecError("field '%s.args': expected a string" % where)
        threads = w.get("threads")
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 4096:
                raise SpecError("field '%s.threads': expected an integer 1..4096" % where)
        mem = w.get("memory_mb")
        if mem is not None and (isinstance(mem, bool) or not isinstance(mem, int)
                                or not 128 <= mem <= 1 << 20):
            raise SpecError("field '%s.memory_mb': expected an integer >= 128" % where)
        s["workloads"].append({"name": n, "size": size, "args": args, "threads": threads,
                               "memory_mb": mem})

    vms = raw.get("vms")
    if vms is None:
        raise SpecError("field 'vms': missing (list of VM counts)")
    if isinstance(vms, int) and not isinstance(vms, bool):
        vms = [vms]
    if (not isinstance(vms, list) or not vms or
            any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 64 for v in vms)):
        raise SpecError("field 'vms': expected a list of integers 1..64, got %r" % (vms,))
    s["vms"] = list(vms)
    s["vcpus"] = _int(raw, "vcpus", 1, 288)
    s["pcpus"] = _int(raw, "pcpus", 1, 4096)
    s["repetitions"] = _int(raw, "repetitions", 1, 10000, default=1)
    s["timeout"] = _int(raw, "timeout", 10, 86400, default=600)

    if raw.get("variants") is not None:
        if "policies" in raw or "relaxed_boost" in raw:
            raise SpecError("field 'variants': give either variants or policies/relaxed_boost")
        vl = raw["variants"]
        if isinstance(vl, str):
            vl = [vl]
        known = [variant_label(p, r) for p in policies for r in (True, False)]
        if not isinstance(vl, list) or not vl:
            raise SpecError("field 'variants': expected a non-empty list")
        for x in vl:
            if x not in known:
                raise SpecError("field 'variants': %r is not one of %s"
                                % (x, ", ".join(dict.fromkeys(known))))
        pairs = []
        for x in dict.fromkeys(vl):
            pol_, strict = (x.split("/")[0], x.endswith("/strict"))
            pairs.append((pol_, not strict))
        raw = dict(raw, policies=list(dict.fromkeys(p for p, _ in pairs)),
                   relaxed_boost=list(dict.fromkeys(r for _, r in pairs)), _pairs=pairs)
    pol = raw.get("policies")
    if pol is None:
        raise SpecError("field 'policies': missing (list of %s)" % "|".join(policies))
    if isinstance(pol, str):
        pol = [pol]
    if not isinstance(pol, list) or not pol:
        raise SpecError("field 'policies': expected a non-empty list")
    for p in pol:
        if p not in policies:
            raise SpecError("field 'policies': %r is not one of %s" % (p, "|".join(policies)))
    rb = raw.get("relaxed_boost", [True])
    if isinstance(rb, bool):
        rb = [rb]
    if not isinstance(rb, list) or not rb or any(not isinstance(x, bool) for x in rb):
        raise SpecError("field 'relaxed_boost': expected a list of booleans, got %r" % (rb,))
    variants = []
    for p in pol:
        for r in (rb if has_relaxed(p) else [True]):
            v = (p, r)
            if v not in variants:
                variants.append(v)
    if "_pairs" in raw:
        variants = raw["_pairs"]
    s["policies"] = list(dict.fromkeys(pol))
    s["relaxed_boost"] = list(dict.fromkeys(rb))
    s["variants"] = [{"policy": p, "relaxed_boost": r, "label": variant_label(p, r)}
                     for p, r in variants]
    labels = [v["label"] for v in s["variants"]]

    pool = raw.get("pool", "shared")
    if pool not in ("shared", "separate"):
        raise SpecError("field 'pool': %r is not shared|separate" % (pool,))
    s["pool"] = pool
    base = raw.get("baseline", "vanilla" if "vanilla" in labels else labels[0])
    if base not in labels:
        raise SpecError("field 'baseline': %r is not one of the variants (%s)"
                        % (base, ", ".join(labels)))
    s["baseline"] = base
    comp = raw.get("compare", ["none"] if "none" in labels and base != "none" else [])
    if isinstance(comp, str):
        comp = [comp]
    if not isinstance(comp, list) or any(c not in labels for c in comp):
        raise SpecError("field 'compare': expected variants among %s, got %r"
                        % (", ".join(labels), comp))
    s["compare"] = [c for c in comp if c != base]
    extra = raw.get("accel_extra", "")
    if not isinstance(extra, str) or not re.match(r"^[A-Za-z0-9_=,.-]*$", extra):
        raise SpecError("field 'accel_extra': expected prop=value[,prop=value...], got %r"
                        % (extra,))
    for kv in filter(None, extra.split(",")):
        k = kv.split("=", 1)[0]
        if k in ("vcpu-sched", "pcpus", "directed-yield", "relaxed-boost", "stats-file",
                 "pool", "thread"):
            raise SpecError("field 'accel_extra': %r is set by the runner" % k)
    s["accel_extra"] = extra
    mem = raw.get("memory_mb")
    if mem is not None and (isinstance(mem, bool) or not isinstance(mem, int) or mem < 128):
        raise SpecError("field 'memory_mb': expected an integer >= 128, got %r" % (mem,))
    s["memory_mb"] = mem
    img = raw.get("image")
    if img is not None and not isinstance(img, str):
        raise SpecError("field 'image': expected a path")
    s["image"] = img
    return s


# ---------------------------------------------------------------- environment
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


# ---------------------------------------------------------------- plan
def points_of(spec):
    """(point id, workload, VM count) of every point, in spec order."""
    return [("%s-%s-%dvm" % (w["name"], w["size"], n), w, n)
            for w in spec["workloads"] for n in spec["vms"]]


def round_trials(spec, pid, workload, nvms, rep):
    """Repetition rep of a point: every variant once, rotated by rep (A/B
    interleaving: drift and host noise spread over all variants)."""
    nv = len(spec["variants"])
    return [{"point": pid, "workload": workload, "vms": nvms, "rep": rep, "order": k,
             "variant": spec["variants"][(k + rep) % nv]} for k in range(nv)]


def plan(spec):
    """The list of trials, in run order: points, then reps, then rotated variants."""
    return [t for pid, w, n in points_of(spec) for rep in range(spec["repetitions"])
            for t in round_trials(spec, pid, w, n, rep)]


def refused_points(spec, has_pool):
    """Points this QEMU cannot run, as {point: message}."""
    out = {}
    if spec["pool"] == "shared" and not has_pool:
        for w in spec["workloads"]:
            for nvms in spec["vms"]:
                if nvms > 1:
                    out["%s-%s-%dvm" % (w["name"], w["size"], nvms)] = (
                        "refused: %d VMs on one shared pool need QEMU's pool= property "
                        "(-accel tcg,pool=NAME), which this build lacks "
                        "(qemu-system-x86_64 -accel tcg,help); set pool = \"separate\" "
                        "to give each VM its own %d slots instead" % (nvms, spec["pcpus"]))
    return out


# ---------------------------------------------------------------- run
def latency_of(result):
    for k in LATENCY_KEYS:
        v = (result or {}).get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v), k
    return None, None


def run_trial(spec, trial, ctx, tno):
    w, v, nvms = trial["workload"], trial["variant"], trial["vms"]
    label = v["label"]
    tag = "t%04d-%s-%s-r%d" % (tno, trial["point"], label.replace("/", "-"), trial["rep"])
    pool_name = "vsched-%s-%d-t%d" % (ctx["run_id"], os.getpid(), tno)
    vms = []
    started = datetime.datetime.now().isoformat(timespec="seconds")
    for i in range(nvms):
        stats = os.path.join(ctx["outdir"], "stats", "%s-vm%d.json" % (tag, i))
        accel = ("tcg,thread=multi,vcpu-sched=on,pcpus=%d,directed-yield=%s,relaxed-boost=%s,"
                 "stats-file=%s" % (spec["pcpus"], v["policy"],
                                    "on" if v["relaxed_boost"] else "off", stats))
        if spec["pool"] == "shared" and nvms > 1:
            accel += ",pool=%s" % pool_name
        if spec["accel_extra"]:
            accel += "," + spec["accel_extra"]
        mem = w["memory_mb"] or spec["memory_mb"]
        vm = vsched_vm.VM(workload=w["name"], smp=spec["vcpus"], accel=accel,
                          qemu=ctx["qemu"], image_dir=ctx["image"], memory=mem,
                          args=w["args"] or None, size=w["size"], threads=w["threads"],
                          extra_args=["-S"] if nvms > 1 else [],
                          log_path=os.path.join(ctx["outdir"], "logs", "%s-vm%d.log" % (tag, i)))
        vms.append((vm, stats, accel))
    results = [None] * nvms

    def waiter(i, vm):
        try:
            results[i] = vm.wait(timeout=spec["timeout"])
        except Exception as e:  # noqa: BLE001 - reported as a failed row
            r = vsched_vm.Result()
            r.reason = "harness error: %s" % e
            results[i] = r
        finally:
            vm.kill()

    threads = []
    try:
        for i, (vm, stats, _) in enumerate(vms):
            if os.path.exists(stats):
                os.unlink(stats)
            vm.start()
        if nvms > 1:
            # started paused (-S): let them all go at once, so their workloads overlap
            for vm, _, _ in vms:
                vm.qmp.execute("cont")
        for i, (vm, _, _) in enumerate(vms):
            t = threading.Thread(target=waiter, args=(i, vm), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
    finally:
        for vm, _, _ in vms:
            vm.kill()

    rows = []
    for i, ((vm, stats, accel), res) in enumerate(zip(vms, results)):
        r = res.result or {}
        lat, key = latency_of(r) if res.ok else (None, None)
        checks = {k: r.get(k) for k in CHECK_KEYS if k in r}
        check = "ok" if all(val == "ok" for val in checks.values()) else "FAIL"
        row = {
            "run_id": ctx["run_id"], "spec": spec["name"], "trial": tno,
            "point": trial["point"], "timeout": spec["timeout"],
            "workload": w["name"], "size": w["size"], "args": w["args"], "vms": nvms,
            "vm_index": i, "vcpus": spec["vcpus"], "pcpus": spec["pcpus"],
            "pool_mode": spec["pool"] if nvms > 1 else "single",
            "pool": pool_name if (spec["pool"] == "shared" and nvms > 1) else "",
            "policy": v["policy"], "relaxed_boost": v["relaxed_boost"], "variant": label,
            "rep": trial["rep"], "order": trial["order"],
            "status": "ok" if res.ok and lat is not None else "failed",
            "reason": None if res.ok and lat is not None else (res.reason or "no latency"),
            "latency_seconds": lat, "latency_key": key,
            "guest_seconds": res.guest_seconds if res.ok else None,
            "boot_seconds": r.get("boot_seconds"),
            "wall_seconds": round(res.wall_seconds, 3) if res.wall_seconds else None,
            "check": check if checks else "", "roundtrip": r.get("roundtrip", ""),
            "size_check": r.get("size_check", ""), "failure_line": res.failure_line,
            "memory_mb": vm.memory, "threads": r.get("threads"), "accel": accel,
            "qemu": ctx["qemu"], "qemu_version": ctx["qemu_version"],
            "git_commit": ctx["git_commit"], "host": ctx["host"], "host_cpus": ctx["host_cpus"],
            "started_at": started, "log": os.path.relpath(vm.log_path, ctx["outdir"]),
            "stats_file": os.path.relpath(stats, ctx["outdir"]) if os.path.exists(stats) else "",
            "result_json": json.dumps(r, sort_keys=True) if r else "",
        }
        if res.ok and checks and check != "ok":
            row["status"], row["reason"] = "failed", "guest check failed: %s" % checks
            row["latency_seconds"] = None
        counters = {}
        if os.path.exists(stats):
            try:
                with open(stats) as f:
                    counters = json.load(f)
            except (OSError, ValueError):
                counters = {}
        row["counters"] = counters
        rows.append(row)
    return rows


def run_points(spec, trial_fn, rows, opts, skip=(), until_ci=None, max_reps=None,
               on_trial=None):
    """Run every point's repetitions, appending trial_fn(trial, tno)'s rows.

    With until_ci (percentage points): after the spec's repetitions, keep
    adding rounds to a point until its widest interval against the baseline
    is narrower than until_ci, or max_reps rounds ran. Returns, per point run
    that way, {"reps", "width", "target", "reached"}."""
    tno, reached = 0, {}
    for pid, w, nvms in points_of(spec):
        if pid in skip:
            continue
        rep = 0
        while True:
            for trial in round_trials(spec, pid, w, nvms, rep):
                tno += 1
                trows = trial_fn(trial, tno)
                rows.extend(trows)
                if on_trial:
                    on_trial(trial, tno, trows)
            rep += 1
            if rep < spec["repetitions"]:
                continue
            if until_ci is None:
                break
            width = cell_width(spec, rows, pid, opts)
            done = width is not None and width < until_ci
            if done or rep >= max_reps:
                reached[pid] = {"reps": rep, "width": width, "target": until_ci,
                                "reached": done}
                break
    return reached


def cell_width(spec, rows, pid, opts):
    """Widest 95 % interval (points) of a cell's variants against the
    baseline; None while one of them has none (too few units)."""
    units = {v["label"]: stats.units_of(_cell_rows(rows, pid, v["label"]), opts["unit"])
             for v in spec["variants"]}
    widths = [_compare(pid, lab, spec["baseline"], units, opts).ci_width
              for lab in units if lab != spec["baseline"]]
    if not widths or None in widths:
        return None
    return max(widths)


# ---------------------------------------------------------------- summary
# The v3 cover letter's table: ipi vs vanilla, latency reduction in percent
# by VM count (16 pCPUs, 16 vCPUs per VM, 120 runs per point).
SERIES = {"dedup": {2: 8.87, 3: 10.29, 4: 15.60}, "vips": {2: 10.23, 3: 6.63, 4: 4.50}}
SERIES_VARIANT, SERIES_REF = "ipi", "vanilla"


def stats_options(unit="trial", resamples=stats.RESAMPLES):
    return {"unit": unit, "resamples": resamples, "level": stats.LEVEL, "seed": stats.SEED,
            "min_units": stats.MIN_UNITS}


def _cell_rows(rows, pid, label):
    return [r for r in rows if r["point"] == pid and r["variant"] == label]


def summarize(spec, rows, refused, opts=None):
    """Per point and variant: median, spread, counter medians, and against
    each reference the reduction with its interval, p-value and verdict."""
    opts = opts or stats_options()
    points = []
    for w in spec["workloads"]:
        for nvms in spec["vms"]:
            pid = "%s-%s-%dvm" % (w["name"], w["size"], nvms)
            p = {"point": pid, "workload": w["name"], "size": w["size"], "vms": nvms,
                 "refused": refused.get(pid), "variants": []}
            units = {}
            for v in spec["variants"]:
                rs = _cell_rows(rows, pid, v["label"])
                units[v["label"]] = stats.units_of(rs, opts["unit"])
                p["variants"].append(_variant_entry(v["label"], rs))
            for e in p["variants"]:
                e["reduction"], e["stats"] = {}, {}
                for ref in [spec["baseline"]] + spec["compare"]:
                    c = _compare(pid, e["variant"], ref, units, opts)
                    e["reduction"][ref] = c.reduction
                    e["stats"][ref] = c.as_dict()
            p["series"] = _series_cell(w["name"], nvms, pid, units, opts)
            points.append(p)
    return points


def _variant_entry(label, rs):
    ok = sorted(r["latency_seconds"] for r in rs if r["status"] == "ok")
    e = {"variant": label, "runs": len(rs), "ok": len(ok), "failed": len(rs) - len(ok),
         "reasons": sorted({r["reason"] for r in rs if r["status"] != "ok"}),
         "median": statistics.median(ok) if ok else None,
         "min": ok[0] if ok else None, "max": ok[-1] if ok else None,
         "iqr": None, "counters": {}}
    if len(ok) >= 4:
        q = statistics.quantiles(ok, n=4)
        e["iqr"] = q[2] - q[0]
    ctr = [r["counters"] for r in rs if r["status"] == "ok" and r.get("counters")]
    for k in TABLE_COUNTERS:
        vals = [c[k] for c in ctr if isinstance(c.get(k), (int, float))]
        if vals:
            e["counters"][k] = statistics.median(vals)
    return e


def _compare(pid, label, ref, units, opts):
    if label == ref:
        return stats.Comparison(label, ref, len(units[label]), len(units[ref]), 0.0 if
                                units[label] else None, None, None, None, "reference")
    return stats.compare(label, ref, units[label], units[ref], "%s|%s|%s" % (pid, label, ref),
                         opts["resamples"])


def _series_cell(workload, nvms, pid, units, opts):
    """The series' cell of this point, or None: reproduced only when the
    interval of ipi vs vanilla excludes 0 with the series' sign."""
    published = SERIES.get(workload, {}).get(nvms)
    if published is None or SERIES_VARIANT not in units or SERIES_REF not in units:
        return None
    c = _compare(pid, SERIES_VARIANT, SERIES_REF, units, opts)
    want = stats.FASTER if published > 0 else stats.SLOWER
    inside = c.ci_low is not None and c.ci_low <= published <= c.ci_high
    return {"published": published, "comparison": c.as_dict(),
            "reproduced": c.verdict == want, "published_inside": inside}


def series_count(points):
    """(reproduced, cells) over the series' cells present in the results."""
    cells = [p["series"] for p in points if p.get("series") and not p["refused"]]
    return sum(c["reproduced"] for c in cells), len(cells)


def fmt_pct(x):
    return "%+.2f%%" % x if x is not None else "-"


def fmt_ci(c):
    if c["ci_low"] is None:
        return "-"
    return "[%+.1f, %+.1f]" % (c["ci_low"], c["ci_high"])


def fmt_p(p):
    if p is None:
        return "-"
    return "%.3f" % p if p >= 0.001 else "<0.001"


def shown_counters(points):
    """TABLE_COUNTERS that any cell carries, in that order (names this runner
    does not know are skipped, names the binary lacks are not shown)."""
    have = {k for p in points for e in p["variants"] for k in e["counters"]}
    return [k for k in TABLE_COUNTERS if k in have]


def format_table(spec, points, meta, opts=None):
    opts = opts or stats_options()
    refs = [spec["baseline"]] + spec["compare"]
    counters = shown_counters(points)
    lines = ["vsched experiment %s  (run %s)" % (spec["name"], meta["run_id"]),
             "%s; commit %s; %s, %d host CPUs" % (meta["qemu_version"], meta["git_commit"],
                                                  meta["host"], meta["host_cpus"]),
             "%d vCPUs per VM, %d pool slots (%s), %s; latency = guest %s; "
             "reduction = (ref - x) / ref of the medians, positive is faster"
             % (spec["vcpus"], spec["pcpus"], spec["pool"], _reps_text(spec, meta),
                "/".join(LATENCY_KEYS)), ""]
    hdr = "%-22s %-15s %5s %9s %19s" % ("point", "variant", "ok", "median s", "min..max")
    hdr += "".join(" %11s" % ("vs " + r)[:11] for r in refs)
    hdr += "".join(" %10s" % k.replace("yield_", "y_").replace("receiver_hit", "rhit")[:10]
                   for k in counters)
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for p in points:
        if p["refused"]:
            lines.append("%-22s %s" % (p["point"], p["refused"]))
            continue
        for e in p["variants"]:
            lines.append(_table_line(p, e, refs, counters))
    lines += format_comparisons(spec, points, opts)
    lines += format_until_ci(meta)
    lines += format_series(points)
    return "\n".join(lines) + "\n"


def _reps_text(spec, meta):
    u = meta.get("until_ci")
    if not u:
        return "%d repetitions" % spec["repetitions"]
    return "%d..%d repetitions (--until-ci %g)" % (spec["repetitions"], u["max_reps"],
                                                     u["target"])


def format_until_ci(meta):
    """Per point run with --until-ci: the repetitions it took and the width reached."""
    u = meta.get("until_ci")
    if not u or not u.get("points"):
        return []
    lines = ["", "--until-ci %g: repetitions run and the widest interval against the "
             "baseline when the point stopped (cap %d)" % (u["target"], u["max_reps"])]
    for pid, r in u["points"].items():
        width = "-" if r["width"] is None else "%.1f points" % r["width"]
        lines.append("%-22s %3d reps  width %-13s %s" % (
            pid, r["reps"], width, "reached" if r["reached"] else "NOT reached (cap)"))
    return lines


def _table_line(p, e, refs, counters):
    s = "%-22s %-15s %2d/%-2d" % (p["point"], e["variant"], e["ok"], e["runs"])
    if e["median"] is None:
        s += " %9s %19s" % ("FAILED", "")
    else:
        s += " %9.3f %8.3f..%-9.3f" % (e["median"], e["min"], e["max"])
    s += "".join(" %11s" % fmt_pct(e["reduction"].get(r)) for r in refs)
    for k in counters:
        c = e["counters"].get(k)
        if c is None:
            s += " %10s" % "-"
        elif k.endswith("_ns"):
            s += " %9.2fs" % (c / 1e9)
        else:
            s += " %10d" % c
    if e["failed"]:
        s += "  failed: %s" % "; ".join(e["reasons"])
    return s


def format_comparisons(spec, points, opts):
    """Every variant against every reference: reduction, interval, p, verdict."""
    refs = [spec["baseline"]] + spec["compare"]
    lines = ["", "comparisons: reduction of the median latency with its %g %% bootstrap "
             "interval (%d resamples, unit %s, seeded), Mann-Whitney U two-sided p; "
             "faster/slower only when the interval excludes 0"
             % (opts["level"], opts["resamples"], opts["unit"])]
    hdr = "%-22s %-15s %-10s %7s %10s %18s %7s  %s" % (
        "point", "variant", "vs", "n", "reduction", "95% interval", "p", "verdict")
    lines += [hdr, "-" * len(hdr)]
    for p in points:
        if p["refused"]:
            continue
        for e in p["variants"]:
            for ref in refs:
                c = e["stats"][ref]
                if e["variant"] == ref:
                    continue
                lines.append("%-22s %-15s %-10s %3d/%-3d %10s %18s %7s  %s" % (
                    p["point"], e["variant"], ref, c["n"], c["n_ref"], fmt_pct(c["reduction"]),
                    fmt_ci(c), fmt_p(c["p"]), c["verdict"]))
    return lines


def format_series(points):
    cells = [p for p in points if p.get("series") and not p["refused"]]
    if not cells:
        return []
    lines = ["", "series v3 (16 pCPU, 16 vCPU/VM, 2/3/4 VMs, %s vs %s; published medians "
             "without intervals): a cell is reproduced when our interval excludes 0 with "
             "the series' sign" % (SERIES_VARIANT, SERIES_REF)]
    hdr = "%-22s %10s %10s %18s %7s  %-12s %s" % (
        "point", "published", "ours", "95% interval", "p", "verdict", "reproduced")
    lines += [hdr, "-" * len(hdr)]
    for p in cells:
        s, c = p["series"], p["series"]["comparison"]
        lines.append("%-22s %10s %10s %18s %7s  %-12s %s%s" % (
            p["point"], fmt_pct(s["published"]), fmt_pct(c["reduction"]), fmt_ci(c),
            fmt_p(c["p"]), c["verdict"], "yes" if s["reproduced"] else "no",
            " (published value inside our interval)" if s["published_inside"] else ""))
    k, n = series_count(points)
    lines += ["", "series cells reproduced: %d of %d (the series has 6: dedup and vips at "
              "2/3/4 VMs)" % (k, n)]
    return lines


COLORS = {"none": "#999999", "vanilla": "#44aa77", "ipi": "#4477cc", "ipi/strict": "#88aadd",
          "ipi-prio": "#cc7744", "ipi-prio/strict": "#ddaa88"}


def plot(spec, points, path):
    """Top: median latency per cell (min..max whiskers). Bottom: reduction
    against the baseline with its 95 % interval as error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = [p for p in points if not p["refused"]]
    labels = [v["label"] for v in spec["variants"]]
    base = spec["baseline"]
    fig, (ax, bx) = plt.subplots(2, 1, sharex=True, figsize=(
        max(6, 1.6 * max(1, len(shown)) * len(labels) / 3), 7.5))
    width = 0.8 / max(1, len(labels))
    palette = iter(plt.get_cmap("tab10").colors)
    for j, lab in enumerate(labels):
        color = COLORS.get(lab) or next(palette)
        off = (j - (len(labels) - 1) / 2) * width
        es = [(i, next(e for e in p["variants"] if e["variant"] == lab))
              for i, p in enumerate(shown)]
        lat = [(i, e) for i, e in es if e["median"] is not None]
        ax.bar([i + off for i, _ in lat], [e["median"] for _, e in lat], width,
               yerr=[[e["median"] - e["min"] for _, e in lat],
                     [e["max"] - e["median"] for _, e in lat]],
               capsize=2, label=lab, color=color)
        if lab == base:
            continue
        ci = [(i, e["stats"][base]) for i, e in es if e["stats"][base]["ci_low"] is not None]
        bx.errorbar([i + off for i, _ in ci], [c["reduction"] for _, c in ci],
                    yerr=[[c["reduction"] - c["ci_low"] for _, c in ci],
                          [c["ci_high"] - c["reduction"] for _, c in ci]],
                    fmt="o", capsize=3, color=color, label=lab)
    for i, p in enumerate(shown):
        s = p.get("series")
        if s:
            bx.plot([i - 0.4, i + 0.4], [s["published"]] * 2, ":", color="black", lw=1)
    bx.axhline(0, color="black", lw=0.8)
    bx.set_xticks(range(len(shown)))
    bx.set_xticklabels([p["point"] for p in shown], fontsize=8)
    ax.set_ylabel("guest latency, s (median, min..max)")
    bx.set_ylabel("reduction vs %s, %% (95 %% interval)" % base)
    ax.set_title("%s: %d vCPUs/VM on %d slots; below: reduction vs %s, dotted: series v3"
                 % (spec["name"], spec["vcpus"], spec["pcpus"], base), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(outdir, spec, meta, rows, points, refused, opts=None):
    with open(os.path.join(outdir, "runs.json"), "w") as f:
        json.dump({"meta": meta, "spec": spec, "refused": refused, "rows": rows}, f, indent=1)
    ckeys = sorted({k for r in rows for k in r["counters"]})
    with open(os.path.join(outdir, "runs.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(ROW_FIELDS + ["c_" + k for k in ckeys])
        for r in rows:
            wr.writerow([("" if r.get(k) is None else r.get(k)) for k in ROW_FIELDS] +
                        [r["counters"].get(k, "") for k in ckeys])
    if points is None:   # during a run: the rows only (--report summarises them)
        return
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump({"meta": meta, "stats": opts or stats_options(), "points": points}, f,
                  indent=1)


# ---------------------------------------------------------------- main
def fmt_dur(s):
    s = int(s)
    return "%d:%02d:%02d" % (s // 3600, s % 3600 // 60, s % 60) if s >= 3600 else \
        "%d:%02d" % (s // 60, s % 60)


def run(spec, args):
    qemu = args.qemu or os.environ.get("VSCHED_QEMU") or vsched_vm.DEFAULT_QEMU
    if not wait_for_qemu(qemu, args.qemu_patience):
        print("experiment: QEMU %s not found (make, or --qemu / VSCHED_QEMU)" % qemu,
              file=sys.stderr)
        return 2
    image = args.image or spec["image"] or os.environ.get("VSCHED_IMAGE") or \
        vsched_vm.DEFAULT_IMAGE
    if not args.no_build:
        try:
            build_image(image)
        except RuntimeError as e:
            print("experiment: %s" % e, file=sys.stderr)
            return 2
    has_pool = qemu_has_pool(qemu)
    refused = refused_points(spec, has_pool)
    run_id = args.run_id or "%s-%s-%d" % (spec["name"], time.strftime("%Y%m%d-%H%M%S"),
                                          os.getpid())
    outdir = os.path.abspath(args.out or os.path.join(REPO, "build", "results", run_id))
    for d in ("", "logs", "stats"):
        os.makedirs(os.path.join(outdir, d), exist_ok=True)
    meta = {"run_id": run_id, "qemu": qemu, "qemu_version": qemu_version(qemu),
            "qemu_has_pool": has_pool, "git_commit": git_commit(), "image": image,
            "host": socket.gethostname(), "host_cpus": os.cpu_count() or 0,
            "python": platform.python_version(),
            "started_at": datetime.datetime.now().isoformat(timespec="seconds")}
    ctx = dict(meta, outdir=outdir)
    trials = [t for t in plan(spec) if t["point"] not in refused]
    for pid, msg in refused.items():
        print("experiment: %s: %s" % (pid, msg), file=sys.stderr)
    print("experiment %s: %s%d trials (%d VM runs) -> %s" % (
        spec["name"], "at least " if args.until_ci else "", len(trials),
        sum(t["vms"] for t in trials), outdir), flush=True)
    if args.until_ci:
        meta["until_ci"] = {"target": args.until_ci, "max_reps": args.max_reps, "points": {}}
    opts = stats_options(args.unit, args.resamples)
    rows = []
    t_start = time.monotonic()
    interrupted = False
    setup_ok = True

    def on_term(*_):
        raise KeyboardInterrupt
    old_term = signal.signal(signal.SIGTERM, on_term)
    progress = _progress(spec, meta, rows, refused, outdir, t_start,
                         None if args.until_ci else len(trials))
    try:
        reached = run_points(spec, _trial_runner(spec, ctx, args, qemu), rows, opts,
                             skip=refused, until_ci=args.until_ci, max_reps=args.max_reps,
                             on_trial=progress)
        if args.until_ci:
            meta["until_ci"]["points"] = reached
    except SetupBroke as e:
        print("experiment: %s" % e, file=sys.stderr)
        setup_ok = False
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, old_term)
    if interrupted:
        print("experiment: interrupted after %d VM runs; summarising what ran" % len(rows),
              file=sys.stderr)
        meta["interrupted"] = True
    meta["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
    meta["elapsed_seconds"] = round(time.monotonic() - t_start, 1)
    points = summarize(spec, rows, refused, opts)
    write_outputs(outdir, spec, meta, rows, points, refused, opts)
    table = format_table(spec, points, meta, opts)
    with open(os.path.join(outdir, "table.txt"), "w") as f:
        f.write(table)
    png = os.path.join(outdir, "plot.png")
    try:
        plot(spec, points, png)
    except ImportError:
        print("experiment: matplotlib missing (apt-get install python3-matplotlib); no plot",
              file=sys.stderr)
        png = None
    print()
    print(table, end="")
    print("\nresults: %s\ntable: %s\nplot: %s" % (
        os.path.join(outdir, "runs.csv"), os.path.join(outdir, "table.txt"), png or "(none)"))
    if interrupted:
        return 130
    if not setup_ok:
        return 2
    failed = sum(r["status"] != "ok" for r in rows)
    if failed:
        print("experiment: %d of %d runs failed" % (failed, len(rows)), file=sys.stderr)
        return 1
    if refused:
        return 3
    return 0


class SetupBroke(Exception):
    """The run cannot go on (the QEMU binary is gone)."""


def _trial_runner(spec, ctx, args, qemu):
    """run_trial, waiting for and retrying a QEMU binary that is being rebuilt."""
    def run_one(trial, tno):
        if tno == 1 or not os.path.exists(qemu):
            wait_for_qemu(qemu, args.qemu_patience)
        for attempt in range(3):
            try:
                return run_trial(spec, trial, ctx, tno)
            except FileNotFoundError as e:
                # the QEMU binary vanishes for a moment while it is rebuilt
                if attempt < 2 and not os.path.exists(qemu) and \
                        wait_for_qemu(qemu, args.qemu_patience):
                    print("experiment: QEMU was missing; retrying trial %d" % tno, flush=True)
                    time.sleep(5)
                    continue
                raise SetupBroke(str(e))
    return run_one


def _progress(spec, meta, rows, refused, outdir, t_start, total):
    """One line per trial (elapsed, ETA when the total is known); the rows
    are rewritten after each, so a long run can be inspected (and survives ^C)."""
    last = [t_start]

    def on_trial(trial, n, trows):
        now = time.monotonic()
        dt, el, last[0] = now - last[0], now - t_start, now
        where = "%d/%d %s, eta %s" % (n, total, fmt_dur(el), fmt_dur(el / n * (total - n))) \
            if total else "%d %s" % (n, fmt_dur(el))
        res = " ".join("%.2fs" % r["latency_seconds"] if r["status"] == "ok"
                       else "FAILED(%s)" % r["reason"] for r in trows)
        print("[%s] %s %s rep %d: %s (%.0fs)" % (
            where, trial["point"], trial["variant"]["label"], trial["rep"] + 1, res, dt),
            flush=True)
        write_outputs(outdir, spec, meta, rows, None, refused)
    return on_trial


def report(outdir, opts=None):
    try:
        with open(os.path.join(outdir, "runs.json")) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print("experiment: %s: no readable runs.json (%s)" % (outdir, e), file=sys.stderr)
        return 2
    spec, meta, rows = data["spec"], data["meta"], data["rows"]
    refused = data.get("refused") or {}
    opts = opts or stats_options()
    points = summarize(spec, rows, refused, opts)
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump({"meta": meta, "stats": opts, "points": points}, f, indent=1)
    table = format_table(spec, points, meta, opts)
    with open(os.path.join(outdir, "table.txt"), "w") as f:
        f.write(table)
    png = os.path.join(outdir, "plot.png")
    plot(spec, points, png)
    print(table, end="")
    print("\ntable: %s\nplot: %s" % (os.path.join(outdir, "table.txt"), png))
    return 0


def _read_runs(d):
    try:
        with open(os.path.join(d, "runs.json")) as f:
            data = json.load(f)
        return data if isinstance(data.get("rows"), list) else None
    except (OSError, ValueError, AttributeError):
        return None


def merge(outdir, dirs, opts=None):
    """Pool the runs of several results directories of one spec into outdir
    (repetitions renumbered after each other), then report."""
    runs = []
    for d in dirs:
        data = _read_runs(d)
        if data is None:
            print("experiment: %s: no readable runs.json" % d, file=sys.stderr)
            return 2
        runs.append(data)
    first = runs[0]["spec"]
    for d, data in zip(dirs[1:], runs[1:]):
        for k in ("name", "vcpus", "pcpus", "pool", "baseline"):
            if data["spec"].get(k) != first.get(k):
                print("experiment: %s: spec field %r differs (%r, not %r): not the same "
                      "experiment" % (d, k, data["spec"].get(k), first.get(k)), file=sys.stderr)
                return 2
    rows, reps = [], 0
    for data in runs:
        for r in data["rows"]:
            rows.append(dict(r, rep=r["rep"] + reps))
        # --until-ci runs more repetitions than the spec names
        reps += max([data["spec"]["repetitions"]] + [r["rep"] + 1 for r in data["rows"]])
    spec = dict(first, repetitions=reps)
    meta = dict(runs[0]["meta"], run_id="+".join(str(d["meta"].get("run_id")) for d in runs),
                merged_from=[os.path.abspath(d) for d in dirs], until_ci=None,
                elapsed_seconds=sum(d["meta"].get("elapsed_seconds") or 0 for d in runs))
    refused = {}
    for data in runs:
        refused.update(data.get("refused") or {})
    os.makedirs(outdir, exist_ok=True)
    write_outputs(outdir, spec, meta, rows, summarize(spec, rows, refused, opts), refused, opts)
    return report(outdir, opts)


def main(argv=None):
    p = argparse.ArgumentParser(description="Run a vsched experiment spec.")
    p.add_argument("spec", nargs="?", help="spec file (TOML or JSON), e.g. experiments/default.toml")
    p.add_argument("--bench", action="store_true",
                   help="run the benchmark matrix (experiments/bench.toml)")
    p.add_argument("--check", action="store_true", help="validate the spec and exit")
    p.add_argument("--report", metavar="DIR",
                   help="rewrite table.txt, summary.json and plot.png of a results directory "
                        "(for example of an interrupted run) and print the table")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="pool the runs of these results directories (one spec, e.g. two "
                        "runs of it) into --out and report them")
    p.add_argument("--list", action="store_true", help="print the planned trials and exit")
    p.add_argument("--qemu", help="QEMU binary (env VSCHED_QEMU)")
    p.add_argument("--image", help="guest image directory (env VSCHED_IMAGE)")
    p.add_argument("--out", help="output directory (default build/results/<run-id>)")
    p.add_argument("--run-id", help="run id (default NAME-DATE-PID)")
    p.add_argument("--reps", type=int, help="override 'repetitions'")
    p.add_argument("--pool", choices=("shared", "separate"), help="override 'pool'")
    p.add_argument("--vms", help="override 'vms' (comma-separated VM counts)")
    p.add_argument("--workloads", help="keep only these workloads (comma-separated names)")
    p.add_argument("--no-build", action="store_true", help="do not (re)build the guest image")
    p.add_argument("--qemu-patience", type=float, default=120,
                   help="seconds to wait for a QEMU binary that is being rebuilt")
    p.add_argument("--until-ci", type=float, metavar="WIDTH",
                   help="after the spec's repetitions, add interleaved rounds to each point "
                        "until every variant's 95%% interval against the baseline is "
                        "narrower than WIDTH percentage points (or --max-reps)")
    p.add_argument("--max-reps", type=int, default=20,
                   help="cap on repetitions per point with --until-ci (default %(default)s)")
    p.add_argument("--unit", choices=stats.UNITS, default="trial",
                   help="what the bootstrap and the rank test resample: a trial's VM runs "
                        "together (default) or every VM run on its own")
    p.add_argument("--resamples", type=int, default=stats.RESAMPLES,
                   help="bootstrap resamples per comparison (default %(default)s)")
    a = p.parse_args(argv)
    if a.resamples < 100:
        p.error("--resamples: at least 100")
    if a.until_ci is not None and not a.until_ci > 0:
        p.error("--until-ci: a width in percentage points > 0")
    opts = stats_options(a.unit, a.resamples)
    if a.report:
        return report(a.report, opts)
    if a.merge:
        if not a.out:
            p.error("--merge needs --out DIR")
        return merge(a.out, a.merge, opts)
    path = a.spec
    if a.bench:
        path = path or os.path.join(REPO, "experiments", "bench.toml")
    if not path:
        p.error("a spec file is needed (or --bench)")
    qemu = a.qemu or os.environ.get("VSCHED_QEMU") or vsched_vm.DEFAULT_QEMU
    policies = qemu_policies(qemu) if os.path.isfile(qemu) else None
    try:
        try:
            spec = load_spec(path, policies)
        except SpecError as e:
            if "'policies'" in str(e) or "'variants'" in str(e):
                e.args = (str(e) + (" (the policies of %s)" % qemu if policies else
                                    " (built-in list: %s not found)" % qemu),)
            raise
        over = {}
        if a.reps is not None:
            over["repetitions"] = a.reps
        if a.pool:
            over["pool"] = a.pool
        if a.vms:
            try:
                over["vms"] = [int(x) for x in a.vms.split(",")]
            except ValueError:
                raise SpecError("--vms: expected comma-separated integers, got %r" % a.vms)
        if a.workloads:
            keep = a.workloads.split(",")
            over["workloads"] = [w for w in spec["workloads"] if w["name"] in keep]
            if not over["workloads"]:
                raise SpecError("--workloads: none of %s in the spec" % keep)
        if over:
            spec = validate_spec(dict(_raw_from(spec), **over), policies)
    except SpecError as e:
        print("experiment: %s" % e, file=sys.stderr)
        return 2
    if a.until_ci and a.max_reps < spec["repetitions"]:
        print("experiment: --max-reps %d is below the spec's %d repetitions"
              % (a.max_reps, spec["repetitions"]), file=sys.stderr)
        return 2
    if a.check:
        print("experiment: %s ok: %d trials" % (path, len(plan(spec))))
        return 0
    if a.list:
        for n, t in enumerate(plan(spec), 1):
            print("%4d %s %s rep %d" % (n, t["point"], t["variant"]["label"], t["rep"] + 1))
        return 0
    return run(spec, a)


def _raw_from(spec):
    """A validated spec back in input form (for overrides)."""
    raw = {k: spec[k] for k in SPEC_FIELDS if k in spec and spec[k] is not None}
    raw["variants"] = [v["label"] for v in spec["variants"]]
    raw.pop("policies", None)
    raw.pop("relaxed_boost", None)
    raw.pop("compare", None)
    if spec["compare"]:
        raw["compare"] = spec["compare"]
    return raw


if __name__ == "__main__":
    sys.exit(main())
