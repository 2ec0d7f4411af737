#!/usr/bin/env python3
"""Print the ninja targets that some of QEMU's meson tests need.

`meson test` would otherwise build every default target of QEMU (all tools,
qga, ...), which doubles make check's cold time on 2 cores.
Usage: qemu-test-targets.py BUILDDIR (--suite SUITE | TEST...)
"""
import json
import os
import subprocess
import sys


def introspect(builddir, what):
    out = subprocess.run(["meson", "introspect", what], cwd=builddir, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main(argv):
    builddir, rest = argv[0], argv[1:]
    tests = introspect(builddir, "--tests")
    if rest[:1] == ["--suite"]:
        chosen = [t for t in tests if "qemu:" + rest[1] in t["suite"]]
    else:
        names = set(rest)
        chosen = [t for t in tests if t["name"] in names]
        missing = names - {t["name"] for t in chosen}
        if missing:
            sys.exit("qemu-test-targets: no such test in this build: %s" % ", ".join(sorted(missing)))
    ids = {d for t in chosen for d in t["depends"]}
    files = []
    for target in introspect(builddir, "--targets"):
        if target["id"] in ids:
            files += [os.path.relpath(f, builddir) for f in target["filename"]]
    print("\n".join(sorted(set(files))))


if __name__ == "__main__":
    main(sys.argv[1:])
