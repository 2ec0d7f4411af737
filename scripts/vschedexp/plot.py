"""The plot: latencies, and reductions with their 95 % intervals."""

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
    from vschedexp.spec import vcpus_text
    ax.set_title("%s: %s vCPUs/VM on %d slots%s; below: reduction vs %s, dotted: series v3"
                 % (spec["name"], vcpus_text(spec), spec["pcpus"],
                    ", virtual time" if spec.get("time") == "virtual" else "", base),
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
