"""The PNG plots of `make bench-peers`: one bar per system and figure (median, with the rounds' min-max), and the
lag's p99 against the pgbench rate along each system's ladder."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import systems  # noqa: E402


def draw(results: dict[str, list[dict]], names: list[str], rows: list, outdir: Path, suffix: str = "") -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    bars = outdir / f"bench-peers{suffix}.png"
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, (key, what, _fmt, better) in zip(axes.flat, rows, strict=True):
        xs, meds, lo, hi, colors = [], [], [], [], []
        for n in names:
            values = [r[key] for r in results[n] if r.get(key) is not None]
            if not values:
                continue
            med = statistics.median(values)
            xs.append(systems.SYSTEMS[n].label.replace(", ", ",\n").replace(" logical", "\nlogical"))
            meds.append(med)
            lo.append(med - min(values))
            hi.append(max(values) - med)
            colors.append(systems.SYSTEMS[n].color)
        ax.bar(xs, meds, yerr=[lo, hi], color=colors, capsize=4)
        if key.startswith("lag_"):   # milliseconds to seconds side by side: only a log scale shows them all
            ax.set_yscale("log")
            what = what.replace("(ms)", "(ms, log scale)")
        ax.set_title(f"{what}\n({better} is better)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("pgrepl, Bucardo and native logical replication: same clusters, same workload (median, min-max)")
    fig.tight_layout()
    fig.savefig(bars, dpi=90)
    plt.close(fig)

    ladder = outdir / f"bench-peers-ladder{suffix}.png"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in names:
        steps = results[n][-1].get("ladder", []) if results[n] else []
        if steps:
            ax.plot([rate for rate, _ in steps], [s["p99"] * 1000 for _, s in steps], marker="o",
                    label=systems.SYSTEMS[n].label, color=systems.SYSTEMS[n].color)
    ax.axhline(1000, color="black", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("pgbench rate (-R, TPS)")
    ax.set_ylabel("lag p99 (ms, log scale)")
    ax.set_title("Lag p99 along the rate ladder (last round); dotted: the 1 s bound")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ladder, dpi=90)
    plt.close(fig)
    return [bars, ladder]
