"""The benchmark's report: ``report.json``, ``report.md`` and PNG plots
(latency CDFs per condition, success rates, the area's cached share over
time), and the ratio table printed at the end of a run."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcma.checks import bench, cma_view
from gcma.report import table


@dataclass(frozen=True)
class Goal:
    """One row of the ratio table: a ratio of matrix.RATIOS per condition,
    what we claim of it, and the test of one value (None: no claim)."""

    heading: str
    key: str
    claim: str
    met: Callable[[float], bool] | None


GOALS = (
    Goal("GCMA p50 / carve-out p50", "gcma_over_carveout_p50", "<= 1.1 everywhere",
         lambda v: v <= 1.1),
    Goal("GCMA {tail} / carve-out {tail}", "gcma_over_carveout_tail", "<= 1.1 everywhere",
         lambda v: v <= 1.1),
    Goal("cma-guarantee p50 / GCMA p50", "guarantee_over_gcma_p50", "<= 1.1 everywhere",
         lambda v: v <= 1.1),
    Goal("GCMA p50 / CMA p50", "gcma_over_cma_p50", "none (for reading)", None),
    Goal("CMA {tail} / GCMA {tail}", "cma_over_gcma_tail", "none (see CMA struggles)", None),
)
#: Plain CMA struggles in a condition when it fails this share of its
#: allocations, or its tail is this many times GCMA's...
CMA_FAIL_SHARE = 0.25
CMA_TAIL_FACTOR = 10.0
#: ... and the benchmark shows what GCMA is for when it does in this many.
CMA_STRUGGLE_CONDITIONS = 2
#: The area whose occupancy says whether a condition pressed on plain CMA.
CMA_COLUMN = "cma"


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.1f}"


def _fmt(value: object) -> str:
    return "-" if value is None else str(value)


def tail(report: dict[str, Any]) -> str:
    """"p99" or "max": what the report's cells can claim."""
    return bench.tail_key(report["matrix"]["count"])


def cell_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """One row per condition: each column's successes and p50/tail in ms."""
    m = report["matrix"]
    key = f"{tail(report)}_us"
    rows = []
    for cond, row in m["cells"].items():
        out = {"condition": cond}
        for col, cell in row.items():
            s = cell["summary"]
            out[col] = f"{s['ok']}/{s['count']}, {_ms(s.get('p50_us'))}/{_ms(s.get(key))}"
        rows.append(out)
    return rows


def cma_free_share(report: dict[str, Any], cond: str) -> float | None:
    """The share of plain CMA's area that was free as its cell started."""
    cell = report["matrix"]["cells"][cond].get(CMA_COLUMN)
    heap = next((c["heap"] for c in report["matrix"]["columns"] if c["name"] == CMA_COLUMN),
                None)
    occ = (cell or {}).get("cma_occupancy", {}).get(heap or "")
    return cma_view.shares(occ)["free"] if occ else None


def cma_struggles(report: dict[str, Any], cond: str) -> str | None:
    """Why plain CMA struggled in ``cond`` ("fails 40 %", "max x12"), "" if
    it did not, None if it was not measured."""
    row = report["matrix"]["cells"][cond]
    if CMA_COLUMN not in row:
        return None
    fail = 1 - row[CMA_COLUMN]["summary"]["success_pct"] / 100
    if fail >= CMA_FAIL_SHARE:
        return f"fails {100 * fail:.0f} %"
    ratio = report["ratios"][cond].get("cma_over_gcma_tail")
    if ratio is not None and ratio >= CMA_TAIL_FACTOR:
        return f"{tail(report)} x{ratio:g}"
    return ""


def ratio_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """The goal rows, each cell "value (met)" or "(not met)", "n/a (cma
    3/20)" where a side did not always succeed; then GCMA's success, the
    CMA area's free share at the start, and whether CMA struggled."""
    t = tail(report)
    conds = list(report["ratios"])
    rows = []
    for goal in GOALS:
        row = {"ratio": goal.heading.format(tail=t), "goal": goal.claim}
        verdicts = []
        for cond in conds:
            r = report["ratios"][cond]
            value = r.get(goal.key)
            if value is None:
                na = r.get(f"{goal.key}_na")
                row[cond] = f"n/a ({na})" if na else "-"
                if na and goal.met:
                    verdicts.append(False)
            else:
                spread = report.get("spread", {}).get(cond, {}).get(goal.key)
                shown = str(value) + (f" [{spread[0]:g}-{spread[1]:g}]" if spread else "")
                if goal.met is None:
                    row[cond] = shown
                else:
                    verdicts.append(goal.met(value))
                    row[cond] = f"{shown} ({'met' if verdicts[-1] else 'not met'})"
        row["verdict"] = _verdict(verdicts) if goal.met else "-"
        rows.append(row)
    ok = {c: report["ratios"][c].get("gcma_success_pct") for c in conds}
    rows.append({"ratio": "GCMA success", "goal": "100 % everywhere",
                 **{c: "-" if v is None else f"{v:g} %" for c, v in ok.items()},
                 "verdict": _verdict([v == 100.0 for v in ok.values() if v is not None])})
    free = {c: cma_free_share(report, c) for c in conds}
    rows.append({"ratio": "CMA area free at start", "goal":
                 f"< {100 * cma_view.MOSTLY_FREE:.0f} % (else CMA was not pressed)",
                 **{c: "-" if v is None else f"{100 * v:.0f} %"
                    + ("" if v < cma_view.MOSTLY_FREE else " (not pressed)")
                    for c, v in free.items()}, "verdict": "-"})
    why = {c: cma_struggles(report, c) for c in conds}
    rows.append({"ratio": "CMA struggles",
                 "goal": f"fails >= {100 * CMA_FAIL_SHARE:.0f} % or {t} >= "
                         f"{CMA_TAIL_FACTOR:g}x GCMA's, in {CMA_STRUGGLE_CONDITIONS} conditions",
                 **{c: "-" if w is None else (w or "no") for c, w in why.items()},
                 "verdict": _verdict([sum(bool(w) for w in why.values())
                                      >= CMA_STRUGGLE_CONDITIONS])})
    return rows


def _verdict(results: list[bool]) -> str:
    if not results:
        return "-"
    return "met" if all(results) else "not met"


def ratio_table(report: dict[str, Any]) -> str:
    conds = list(report["ratios"])
    m = report["matrix"]
    boots = len(report.get("boot_ratios") or [None])
    text = [f"{m['count']} allocations of {m['size']} per heap and condition"
            + ("" if m["count"] >= bench.P99_MIN_COUNT else
               f" (fewer than {bench.P99_MIN_COUNT}: the tail shown is the slowest, "
               "not a p99)")
            + (f"; ratios are medians of {boots} boots, [lowest-highest]" if boots > 1 else "")
            + ":",
            table(ratio_rows(report), ["ratio", *conds, "goal", "verdict"])]
    u = report.get("utility")
    if u:
        text.append(f"churn: {u['area']} area holding cached pages {_pct(u['area_share_mean'])} "
                    f"on average (max {_pct(u['area_share_max'])}), hit rate "
                    f"{_pct(u['hit_rate'])}, reads {_fmt(u['read_mib_s_on'])} MiB/s with "
                    f"donation on vs {_fmt(u['read_mib_s_off'])} off "
                    f"(x{_fmt(u['throughput_on_over_off'])})")
    return "\n".join(text)


def occupancy_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    """Per condition and CMA area: what occupied it as the cma column's
    cell started, and what CMA's counters did during the cell."""
    rows = []
    for cond, row in report["matrix"]["cells"].items():
        cell = row.get(CMA_COLUMN) or next(iter(row.values()))
        for area, occ in cell.get("cma_occupancy", {}).items():
            sh = cma_view.shares(occ)
            counters = cell.get("cma_counters", {})
            rows.append({
                "condition": cond, "area": area,
                **{k: f"{100 * sh[k]:.0f} %" for k in ("free", "anon", "file", "kernel")},
                "dirty": str(occ["dirty"]), "writeback": str(occ["writeback"]),
                "locked": str(occ["locked"]), "mapped": str(occ["mapped"]),
                "CMA fails": _fmt(counters.get(f"{area}/alloc_pages_fail")),
                "migrate fails": _fmt(counters.get("pgmigrate_fail")),
            })
    return rows


OCCUPANCY_COLUMNS = ["condition", "area", "free", "anon", "file", "kernel", "dirty",
                     "writeback", "locked", "mapped", "CMA fails", "migrate fails"]


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
        f"Cells: successes, p50/{tail(report)} latency in ms (the allocation ioctl only"
        + (f"; with fewer than {bench.P99_MIN_COUNT} allocations the tail is the slowest "
           "one, never called a p99" if m["count"] < bench.P99_MIN_COUNT else "")
        + "). A ratio is given only where both sides succeeded every time"
        + (f"; ratios are the medians of {len(report['boot_ratios'])} boots, with "
           "[lowest-highest] across them (latencies, plots and occupancy: the first boot)"
           if len(report.get("boot_ratios") or []) > 1 else "")
        + ". Each cell "
        "starts with one untimed allocation (an emulator translates code the first "
        "time it runs). Absolute times on the emulated target are TCG emulation; "
        "compare ratios.",
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
    if m.get("order"):
        lines += ["", f"Within a condition the heaps take turns, {m['block']} allocations "
                  f"at a time, in an order shuffled for each block (seed {m['seed']}), so "
                  "that drift favours none. The order, block by block:", ""]
        lines += [f"- `{cond}`: " + " | ".join(", ".join(o) for o in order)
                  for cond, order in m["order"].items()]
    lines += ["", "## Latency", "", _md_table(cell_rows(report), ["condition", *cols]), "",
              "## Ratios and goals", "", _md_table(ratio_rows(report),
                                                   ["ratio", *report["ratios"], "goal",
                                                    "verdict"]), "",
              "## What occupied CMA", "",
              "As each condition's plain-CMA cell started, the pages of each CMA area "
              "by `/proc/kpageflags` and `/proc/kpagecount` (`cma_occupancy`; pins and "
              "extra references leave no flag), and CMA's failures during the cell. A "
              f"condition that leaves plain CMA's area {100 * cma_view.MOSTLY_FREE:.0f} % "
              "free or more does not test CMA.", "",
              _md_table(occupancy_rows(report), OCCUPANCY_COLUMNS), ""]
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
