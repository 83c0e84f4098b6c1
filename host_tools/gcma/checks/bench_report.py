"""The benchmark's report: ``report.json``, ``report.md`` and PNG plots
(latency CDFs per condition, success rates, the area's cached share over
time), and the ratio table printed at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gcma.report import table

# The ratio table's rows: (heading, key in the ratios, the goal).
TARGETS = (
    ("GCMA p50 / carve-out p50", "gcma_over_carveout_p50", "<= 1.1"),
    ("GCMA p99 / carve-out p99", "gcma_over_carveout_p99", "<= 1.1"),
    ("GCMA p50 / CMA p50", "gcma_over_cma_p50", "<= 1 where CMA succeeds"),
    ("CMA p99 / GCMA p99", "cma_over_gcma_p99", ">= 20 under writeback"),
)


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.1f}"


def _fmt(value: object) -> str:
    return "-" if value is None else str(value)


def cell_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per condition: each column's successes and p50/p99 in ms."""
    m = report["matrix"]
    rows = []
    for cond, row in m["cells"].items():
        out = {"condition": cond}
        for col, cell in row.items():
            s = cell["summary"]
            out[col] = (f"{s['ok']}/{s['count']}, {_ms(s.get('p50_us'))}/"
                        f"{_ms(s.get('p99_us'))}")
        rows.append(out)
    return rows


def ratio_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for heading, key, goal in TARGETS:
        row = {"ratio": heading, "goal": goal}
        for cond, r in report["ratios"].items():
            row[cond] = _fmt(r.get(key))
        rows.append(row)
    return rows


def ratio_table(report: dict[str, Any]) -> str:
    conds = list(report["ratios"])
    text = [table(ratio_rows(report), ["ratio", *conds, "goal"])]
    u = report.get("utility")
    if u:
        text.append(f"churn: {u['area']} area holding cached pages {_pct(u['area_share_mean'])} "
                    f"on average (max {_pct(u['area_share_max'])}), hit rate "
                    f"{_pct(u['hit_rate'])}, reads {_fmt(u['read_mib_s_on'])} MiB/s with "
                    f"donation on vs {_fmt(u['read_mib_s_off'])} off "
                    f"(x{_fmt(u['throughput_on_over_off'])})")
    return "\n".join(text)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def markdown(report: dict[str, Any], plots: dict[str, str]) -> str:
    m = report["matrix"]
    cols = [c["name"] for c in m["columns"]]
    lines = [
        "# GCMA benchmark",
        "",
        f"{m['count']} allocations of {m['size']} per cell, one at a time, in one boot "
        f"of target `{report['target']}` (kernel variant `{report['variant']}`). "
        "Cells: successes, p50/p99 latency in ms (the allocation ioctl only"
        + ("; below 100 allocations, p99 is the slowest" if m["count"] < 100 else "")
        + "). Each cell starts with one untimed allocation (an emulator translates "
        "code the first time it runs). Absolute times on the emulated target are "
        "TCG emulation; compare ratios.",
        "",
        "Reproduce: `" + report["reproducer"] + "`",
        "",
        "## Heaps",
        "",
    ]
    lines += [f"- `{c['name']}`: {c['label']} (`/dev/dma_heap/{c['heap']}`)" for c in m["columns"]]
    lines += [f"- `{name}`: not measured: {why}" for name, why in m["absent"].items()]
    lines += ["", "## Conditions", ""]
    for c in m["conditions"]:
        gens = m["generators"].get(c["name"], {})
        what = "; ".join(f"`{g['command']}`" for g in gens.values()) or "nothing running"
        lines.append(f"- `{c['name']}`: {what}")
    lines += ["", "## Latency", "", _md_table(cell_rows(report), ["condition", *cols]), "",
              "## Ratios", "", _md_table(ratio_rows(report), ["ratio", *report["ratios"],
                                                              "goal"]), ""]
    u = report.get("utility")
    if u:
        lines += [
            "## Cleancache utility (churn)", "",
            f"{u['working_set_mib']} MiB of files read {u['rounds']} times by a reader "
            f"limited to {u['memory_limit']}.", "",
            f"- share of the `{u['area']}` area holding cached pages during the timed "
            f"rounds: mean {_pct(u['area_share_mean'])}, max {_pct(u['area_share_max'])}",
            f"- hit rate (restored / lookups): {_pct(u['hit_rate'])} "
            f"({u['counters_on']['restored']} / "
            f"{u['counters_on']['restored'] + u['counters_on']['missed']})",
            f"- read throughput: {_fmt(u['read_mib_s_on'])} MiB/s with donation on, "
            f"{_fmt(u['read_mib_s_off'])} MiB/s off (x{_fmt(u['throughput_on_over_off'])}; "
            f"{u['pages_donated_while_off']} pages still donated while off)",
            "",
        ]
    lines += ["## Plots", ""] + [f"- [{name}]({path})" for name, path in plots.items()] + [""]
    return "\n".join(lines)


def _md_table(rows: list[dict[str, str]], columns: list[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(r.get(c, "-") for c in columns) + " |" for r in rows]
    return "\n".join(out)


def plot(report: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """The PNG plots; returns their file names by title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    m = report["matrix"]
    conds = list(m["cells"])
    cols = [c["name"] for c in m["columns"]]
    files: dict[str, str] = {}

    fig, axes = plt.subplots(1, len(conds), figsize=(4 * len(conds), 3.6), sharey=True,
                             squeeze=False)
    for ax, cond in zip(axes[0], conds, strict=True):
        for col in cols:
            lat = sorted(m["cells"][cond].get(col, {}).get("lat_us", []))
            if not lat:
                continue
            ys = [(i + 1) / len(lat) for i in range(len(lat))]
            ax.step([x / 1000 for x in lat], ys, where="post", label=col)
        ax.set_title(cond)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("allocation latency, ms")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("fraction of allocations")
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(f"{m['size']} allocations: latency CDF per condition")
    fig.tight_layout()
    files["latency CDF per heap and condition"] = "latency-cdf.png"
    fig.savefig(out_dir / "latency-cdf.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(conds)), 3.6))
    width = 0.8 / max(1, len(cols))
    for i, col in enumerate(cols):
        vals = [m["cells"][c].get(col, {}).get("summary", {}).get("success_pct", 0)
                for c in conds]
        ax.bar([x + i * width for x in range(len(conds))], vals, width, label=col)
    ax.set_xticks([x + width * (len(cols) - 1) / 2 for x in range(len(conds))], conds)
    ax.set_ylabel("allocations that succeeded, %")
    ax.set_ylim(0, 105)
    ax.legend(fontsize="small", loc="lower left")
    ax.set_title("success rate per heap and condition")
    fig.tight_layout()
    files["success rate"] = "success-rate.png"
    fig.savefig(out_dir / "success-rate.png", dpi=90)
    plt.close(fig)

    u = report.get("utility")
    if u and u["share_samples"]:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ts = [s[0] for s in u["share_samples"]]
        ax.plot(ts, [100 * s[1] for s in u["share_samples"]], label=f"{u['area']} area")
        ax.plot(ts, [100 * s[2] for s in u["share_samples"]], label="every pool")
        ax.axvline(u["timed_from_s"], color="grey", linestyle=":", label="timed rounds")
        ax.set_xlabel("time, s")
        ax.set_ylabel("donated pages holding a cached page, %")
        ax.set_ylim(0, 105)
        ax.legend(fontsize="small")
        ax.set_title("cleancache use of the donated memory (churn)")
        fig.tight_layout()
        files["cached share over time"] = "cached-share.png"
        fig.savefig(out_dir / "cached-share.png", dpi=90)
        plt.close(fig)
    return files


def write(report: dict[str, Any], out_dir: Path) -> Path:
    """Write report.json, the plots and report.md into ``out_dir``; returns
    the path of report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot(report, out_dir)
    report = dict(report, plots=plots)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    md = out_dir / "report.md"
    md.write_text(markdown(report, plots))
    return md
