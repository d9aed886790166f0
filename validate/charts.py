"""Inline SVG bar charts for the sign-off report: no script, no external file, opens offline.

Hand-written rather than a plotting library: three bar charts of a few rows each, and the
output must be deterministic text (the same run gives the same bytes, so the pack's hashes
and golden files stay stable) and render identically in a browser and in WeasyPrint.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

COLOURS = ("#1f5f99", "#e07b39", "#4c9a2a", "#8c564b")
ROW_HEIGHT = 18
LABEL_WIDTH = 300
BAR_WIDTH = 360
VALUE_WIDTH = 90


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, Sequence[int | float]]],
    series: Sequence[str],
    unit: str = "",
) -> str:
    """Horizontal bars, one group per row, one bar per series; values printed at the bar end."""
    largest = max((abs(v) for _, values in rows for v in values), default=0) or 1
    per_group = ROW_HEIGHT * len(series) + 6
    legend_height = 20 if len(series) > 1 else 0
    height = 28 + legend_height + per_group * len(rows)
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    if len(series) > 1:
        for n, name in enumerate(series):
            x = LABEL_WIDTH + n * 120
            parts.append(
                f'<rect x="{x}" y="22" width="10" height="10" fill="{COLOURS[n % 4]}"/>'
                f'<text x="{x + 14}" y="31">{escape(name)}</text>'
            )
    top = 28 + legend_height
    for r, (label, values) in enumerate(rows):
        y = top + r * per_group
        middle = y + per_group / 2
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{middle + 4:.0f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        for n, value in enumerate(values):
            length = BAR_WIDTH * abs(value) / largest
            bar_y = y + 3 + n * ROW_HEIGHT
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{bar_y}" width="{length:.1f}" '
                f'height="{ROW_HEIGHT - 4}" fill="{COLOURS[n % 4]}"/>'
                f'<text x="{LABEL_WIDTH + length + 4:.1f}" y="{bar_y + ROW_HEIGHT - 7}">'
                f"{_number(value)}{escape(unit)}</text>"
            )
    parts.append("</svg>")
    return "\n".join(parts)


def _number(value: int | float) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}".replace(",", " ")
    return f"{value:,}".replace(",", " ")
