"""An experiment spec: read, check every field, normalise (docs/experiment.rst).

The normalised spec is a plain dict, stored as JSON with the results
(runs.json) so that ``--report`` and ``--merge`` read any results directory."""

import json
import os
import re
from dataclasses import dataclass

try:
    import tomllib
except ImportError:  # pragma: no cover - Python < 3.11
    tomllib = None

# Policies when no QEMU binary can be asked (host.qemu_policies asks it):
# the ones this tree's core registers (accel/vsched/core/policy_*.cc).
POLICIES = ("none", "vanilla", "ipi", "ipi-prio", "ipi-v2", "random")
# relaxed-boost applies to the IPI-aware policies (ipi, ipi-prio, ipi-v2...):
# those get a "/strict" variant; the others run with it on only.
RELAXED_PREFIX = "ipi"
# The "off" variant: vcpu-sched=off, upstream QEMU's behaviour (every vCPU
# a host thread, the host kernel overcommits): real time only.
OFF = "off"
SIZES = ("small", "large")
TIME_BASES = ("real", "virtual")
# time = "virtual": -icount shift (one instruction is 2^shift ns) and the
# scheduler's quantum (instructions per slot per round); the ranges are
# QEMU's (docs/design/virtual-time.rst). The seed of repetition r is
# seed + r (QEMU's -seed).
SHIFT_RANGE = (0, 10)
QUANTUM_RANGE = (1000, 10000000)
SEED_RANGE = (0, 1 << 31)


class SpecError(Exception):
    """A malformed spec; the message names the field."""


SPEC_FIELDS = {
    "name": "run name (letters, digits, - _ .)",
    "description": "free text",
    "workloads": "list of {name, size, args, threads, memory_mb}",
    "vms": "list of VM counts per point",
    "vcpus": "vCPUs per VM, or a list: one per entry of vms",
    "pcpus": "pool slots per point",
    "policies": "list of directed-yield policies (the binary's, e.g. none, vanilla, ipi)",
    "relaxed_boost": "list of booleans, for the ipi* policies",
    "variants": "explicit list of variants (none, vanilla, ipi, ipi/strict, ipi-prio, "
                "ipi-prio/strict, each optionally +prop=value..., e.g. "
                "ipi-prio+ipi-lift=on) instead of policies x relaxed_boost",
    "repetitions": "trials per variant and point",
    "timeout": "seconds per trial",
    "pool": "shared|separate",
    "baseline": "variant the reduction is computed against",
    "compare": "more variants to compute reductions against",
    "accel_extra": "extra -accel tcg properties, e.g. slice=4ms",
    "memory_mb": "guest memory per VM (default 192 + 32 per vCPU)",
    "cpu": "QEMU -cpu model of every VM (default max), e.g. max,-monitor",
    "image": "guest image directory",
    "time": "real|virtual: the time base (virtual: -icount, lockstep rounds)",
    "shift": "time = virtual: -icount shift (0..10, default 0)",
    "quantum": "time = virtual: instructions per slot per round (1000..10000000)",
    "seed": "time = virtual: -seed of the first repetition (repetition r: seed + r)",
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


def _vcpus(raw, vms):
    """vCPUs per VM: one integer, or one per VM count (e.g. 1 VM x 8, 2 x 4)."""
    v = raw.get("vcpus")
    if not isinstance(v, list):
        return _int(raw, "vcpus", 1, 288)
    if len(v) != len(vms):
        raise SpecError("field 'vcpus': a list needs one entry per entry of vms (%d), got %d"
                        % (len(vms), len(v)))
    for x in v:
        _int({"vcpus": x}, "vcpus", 1, 288)
    if len(set(vms)) != len(vms):
        raise SpecError("field 'vms': a list of vcpus needs distinct VM counts")
    return list(v)


def vcpus_of(spec, nvms):
    """vCPUs per VM at a VM count."""
    v = spec["vcpus"]
    return v[spec["vms"].index(nvms)] if isinstance(v, list) else v


def vcpus_text(spec):
    v = spec["vcpus"]
    if not isinstance(v, list):
        return "%d" % v
    return "/".join(map(str, v)) + " (at %s VMs)" % "/".join(map(str, spec["vms"]))


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
    policies = tuple(policies or POLICIES) + (OFF,)
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
    s["vcpus"] = _vcpus(raw, s["vms"])
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
        pairs = []
        for x in dict.fromkeys(vl):
            base, extra = _split_variant(x)
            if base not in known:
                raise SpecError("field 'variants': %r is not one of %s (optionally "
                                "+prop=value...)" % (base, ", ".join(dict.fromkeys(known))))
            pol_, strict = (base.split("/")[0], base.endswith("/strict"))
            pairs.append((pol_, not strict, extra))
        raw = dict(raw, policies=list(dict.fromkeys(p for p, _, _ in pairs)),
                   relaxed_boost=list(dict.fromkeys(r for _, r, _ in pairs)), _pairs=pairs)
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
            v = (p, r, "")
            if v not in variants:
                variants.append(v)
    if "_pairs" in raw:
        variants = raw["_pairs"]
    s["policies"] = list(dict.fromkeys(pol))
    s["relaxed_boost"] = list(dict.fromkeys(rb))
    s["variants"] = [{"policy": p, "relaxed_boost": r, "extra": e,
                      "label": variant_label(p, r) + ("+" + e if e else "")}
                     for p, r, e in variants]
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
    _check_props("accel_extra", extra.split(","))
    s["accel_extra"] = extra
    mem = raw.get("memory_mb")
    if mem is not None and (isinstance(mem, bool) or not isinstance(mem, int) or mem < 128):
        raise SpecError("field 'memory_mb': expected an integer >= 128, got %r" % (mem,))
    s["memory_mb"] = mem
    cpu = raw.get("cpu", "max")
    if not isinstance(cpu, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_=,.+-]*$", cpu):
        raise SpecError("field 'cpu': expected a -cpu model[,+feature|-feature...], got %r"
                        % (cpu,))
    s["cpu"] = cpu
    img = raw.get("image")
    if img is not None and not isinstance(img, str):
        raise SpecError("field 'image': expected a path")
    s["image"] = img
    s.update(_time_fields(raw))
    if s["time"] == "virtual" and OFF in s["policies"]:
        raise SpecError("field 'variants': \"off\" (vcpu-sched=off, upstream QEMU) has no "
                        "virtual-time form: time=virtual is the slot scheduler's time base "
                        "(docs/experiment.rst, \"Virtual time\"); run it with time = \"real\"")
    if s["time"] == "virtual" and s["pool"] == "separate" and max(s["vms"]) > 1:
        raise SpecError("field 'pool': \"separate\" with time = \"virtual\": VMs on "
                        "separate pools each have their own virtual clock and slots and "
                        "never compete; use pool = \"shared\"")
    return s


# -accel properties the runner sets itself (not in accel_extra or a variant).
RUNNER_PROPS = ("vcpu-sched", "pcpus", "directed-yield", "relaxed-boost", "stats-file",
                "pool", "pool-members", "thread", "time", "quantum")
PROP_RE = re.compile(r"^[A-Za-z0-9_-]+=[A-Za-z0-9_.-]+$")


def _check_props(field, kvs):
    for kv in filter(None, kvs):
        if not PROP_RE.match(kv):
            raise SpecError("field '%s': %r is not prop=value" % (field, kv))
        if kv.split("=", 1)[0] in RUNNER_PROPS:
            raise SpecError("field '%s': %r is set by the runner" % (field, kv.split("=")[0]))


def _split_variant(x):
    """'ipi-prio+ipi-lift=on+slice=2ms' -> ('ipi-prio', 'ipi-lift=on+slice=2ms'): a
    variant may add -accel properties of its own, so a mechanism can be A/B'd
    in one run (the label carries them)."""
    if not isinstance(x, str):
        raise SpecError("field 'variants': expected strings, got %r" % (x,))
    base, _, extra = x.partition("+")
    if extra:
        _check_props("variants", extra.split("+"))
    return base, extra


def _time_fields(raw):
    """time, shift, quantum, seed: the last three only with time = "virtual"."""
    tb = raw.get("time", "real")
    if tb not in TIME_BASES:
        raise SpecError("field 'time': %r is not one of %s" % (tb, "|".join(TIME_BASES)))
    if tb == "real":
        for k in ("shift", "quantum", "seed"):
            if raw.get(k) is not None:
                raise SpecError("field '%s': only with time = \"virtual\" (this spec's time "
                                "is real)" % k)
        return {"time": "real", "shift": None, "quantum": None, "seed": None}
    return {"time": "virtual",
            "shift": _int(raw, "shift", *SHIFT_RANGE, default=0),
            "quantum": (None if raw.get("quantum") is None
                        else _int(raw, "quantum", *QUANTUM_RANGE)),
            "seed": _int(raw, "seed", *SEED_RANGE, default=1)}


def seed_of(spec, rep):
    """QEMU's -seed of repetition rep (virtual time), else None."""
    if spec.get("time") != "virtual":
        return None
    return spec["seed"] + rep


def raw_from(spec):
    """A validated spec back in input form (for overrides)."""
    raw = {k: spec[k] for k in SPEC_FIELDS if k in spec and spec[k] is not None}
    raw["variants"] = [v["label"] for v in spec["variants"]]
    raw.pop("policies", None)
    raw.pop("relaxed_boost", None)
    raw.pop("compare", None)
    if spec["compare"]:
        raw["compare"] = spec["compare"]
    return raw


@dataclass(frozen=True)
class Point:
    """A workload at a VM count: the VMs of one trial of it run together."""
    id: str
    workload: dict
    vms: int


def points_of(spec):
    """Every point, in spec order (workloads, then VM counts)."""
    return [Point("%s-%s-%dvm" % (w["name"], w["size"], n), w, n)
            for w in spec["workloads"] for n in spec["vms"]]
