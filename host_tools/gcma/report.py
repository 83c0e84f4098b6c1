"""Results from on-target programs (key=value lines) and plain-text tables."""

from __future__ import annotations


def parse_kv(line: str) -> dict[str, str]:
    """``a=1 b=x`` -> {"a": "1", "b": "x"}; words without '=' are ignored."""
    return dict(word.split("=", 1) for word in line.split() if "=" in word)


def table(rows: list[dict[str, str]], columns: list[str]) -> str:
    widths = {c: max([len(c)] + [len(r.get(c, "-")) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns),
             "  ".join("-" * widths[c] for c in columns)]
    for row in rows:
        lines.append("  ".join(row.get(c, "-").ljust(widths[c]) for c in columns))
    return "\n".join(lines)
