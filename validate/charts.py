"""Inline SVG bar charts for the sign-off report: no script, no external file, opens offline.

Hand-written rather than a plotting library: a few bar charts and a waterfall of a few rows
each, and the output must be deterministic text (the same run gives the same bytes, so the
pack's hashes and golden files stay stable) and render identically in a browser and in
WeasyPrint. A plotting library's SVG embeds ids and timestamps that change per render.
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


SEVERITY_COLOURS = {"block": "#b00020", "review": "#e07b39", "info": "#1f5f99"}
"""Exceptions charts colour each bar by its code's severity."""


def coloured_bars(
    title: str, rows: Sequence[tuple[str, int, str]], legend: Sequence[tuple[str, str]]
) -> str:
    """One bar per row in its own colour (``rows``: label, value, colour), with a legend."""
    largest = max((abs(v) for _, v, _ in rows), default=0) or 1
    height = 48 + ROW_HEIGHT * len(rows)
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    parts = [_svg_head(title, width, height)]
    for n, (name, colour) in enumerate(legend):
        x = LABEL_WIDTH + n * 110
        parts.append(
            f'<rect x="{x}" y="22" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="31">{escape(name)}</text>'
        )
    for r, (label, value, colour) in enumerate(rows):
        y = 44 + r * ROW_HEIGHT
        length = BAR_WIDTH * abs(value) / largest
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 11}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{ROW_HEIGHT - 4}" '
            f'fill="{colour}"/><text x="{LABEL_WIDTH + length + 4:.1f}" y="{y + 11}">'
            f"{_number(value)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def waterfall(title: str, steps: Sequence[tuple[str, int, str]]) -> str:
    """A bridge as a waterfall chart.

    The first and last steps are totals drawn from zero, the others move a running total;
    ``steps`` holds label, amount (minor units) and the amount's text.
    """
    running, spans = 0, []
    for n, (label, amount, text) in enumerate(steps):
        total = n in (0, len(steps) - 1)
        start = 0 if total else running
        end = amount if total else running + amount
        running = end
        spans.append((label, min(start, end), max(start, end), total, amount, text))
    low = min([0, *(s[1] for s in spans)])
    high = max([0, *(s[2] for s in spans)])
    scale = BAR_WIDTH / ((high - low) or 1)
    height = 34 + ROW_HEIGHT * len(spans)
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH + 60
    zero = LABEL_WIDTH + (0 - low) * scale
    axis = f'<line x1="{zero:.1f}" y1="24" x2="{zero:.1f}" y2="{height}" stroke="#999"/>'
    parts = [_svg_head(title, width, height), axis]
    for r, (label, lo, hi, total, amount, text) in enumerate(spans):
        y = 28 + r * ROW_HEIGHT
        colour = "#1f5f99" if total else ("#4c9a2a" if amount >= 0 else "#b00020")
        x = LABEL_WIDTH + (lo - low) * scale
        length = max((hi - lo) * scale, 1.0)
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 11}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{x:.1f}" y="{y}" width="{length:.1f}" height="{ROW_HEIGHT - 4}" '
            f'fill="{colour}"/><text x="{LABEL_WIDTH + BAR_WIDTH + 6}" y="{y + 11}">'
            f"{escape(text)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _svg_head(title: str, width: int, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">'
        f"<title>{escape(title)}</title>"
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>'
    )
