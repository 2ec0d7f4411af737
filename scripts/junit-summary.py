#!/usr/bin/env python3
"""Sum JUnit XML result files: one line per file, then 'N passed, N failed'.

Exit status is non-zero when anything failed or nothing ran at all.
"""
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count(path):
    """Return (passed, failed, skipped, failed test names) for one file."""
    passed = failed = skipped = 0
    names = []
    for case in ET.parse(path).iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            failed += 1
            names.append(f"{case.get('classname', '')}.{case.get('name')}".lstrip("."))
        elif "skipped" in kinds:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped, names


def main(paths):
    total = [0, 0, 0]
    for p in map(Path, paths):
        passed, failed, skipped, names = count(p)
        total = [total[0] + passed, total[1] + failed, total[2] + skipped]
        print(f"{p.stem:14} {passed:5} passed {failed:4} failed {skipped:4} skipped")
        for n in names:
            print(f"    FAILED {n}")
    line = f"{total[0]} passed, {total[1]} failed"
    if total[2]:
        line += f", {total[2]} skipped"
    print(line)
    return 1 if total[1] or not total[0] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
