#!/usr/bin/python3
"""vsched experiment runner: directed-yield policies over a matrix of VMs.

    scripts/experiment.py experiments/default.toml        # run a spec
    scripts/experiment.py --check experiments/series.toml # validate only
    scripts/experiment.py --bench                         # the benchmark matrix
    scripts/experiment.py --list experiments/ci.toml      # print the planned runs
    scripts/experiment.py --report build/results/RUN      # re-summarise a run
    scripts/experiment.py SPEC --until-ci 10              # repeat until intervals < 10 points
    scripts/experiment.py experiments/ci-vtime.toml --jobs 2 --expect   # virtual-time regression
    scripts/experiment.py experiments/ci-vtime.toml --record-expected   # re-record its values

A spec (TOML or JSON, see docs/experiment.rst) names the workloads and sizes,
VM counts, vCPUs per VM, pool slots, policies, relaxed-boost settings and
repetitions. Each *point* (workload x VM count) runs every policy variant
REPS times, A/B interleaved (rep r runs the variants rotated by r); one
*trial* starts all the VMs of the point together on one pool of slots (QEMU's
``pool=NAME``, unique per trial) and waits for all of them. Each VM is one
row, tagged with the full configuration, the QEMU version and the git commit.
Every variant is compared with the baseline: median latency reduction, its
95 % bootstrap interval, a Mann-Whitney p-value and a verdict.

Output in build/results/<run-id>/: runs.csv, runs.json (rows + spec + meta),
summary.json, table.txt, plot.png, and per VM its serial log and stats file.
A guest that times out, panics, locks up or prints no result line is a failed
row (status=failed, reason=...), never a number.

Spec key time = "virtual" runs every VM on instruction counts (-icount,
lockstep slots): a repetition is another -seed, one seed a side is an exact
comparison, and --jobs N runs N trials at once.

Exit status: 0 all runs ok; 1 some runs failed; 2 bad spec or setup; 3 some
points refused (e.g. shared pools without pool= support) while the rest ran ok;
4 (--expect) a reduction moved from the spec's expected file.

The code is the package scripts/vschedexp/ (spec, host, trials, stats,
summary, report, plot, cli). Python 3.11 with Debian's python3-numpy,
python3-scipy and python3-matplotlib.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vschedexp.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
