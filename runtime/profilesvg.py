"""Small inline-SVG plots for the profile's HTML report (no plotting library needed).

Each function returns one ``<svg>`` element as text: a line plot (with optional
markers and a vertical marker line) and a horizontal stacked bar chart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape

WIDTH, HEIGHT = 620, 320
TOP, RIGHT, BOTTOM, LEFT = 34, 150, 46, 64
COLORS: tuple[str, ...] = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
COLORS += ("#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

Point = tuple[float, float]
Scale = Callable[[float], float]


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not high > low:
        high = low + 1.0
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 2)]


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def _frame(title: str, xlabel: str, ylabel: str, body: list[str]) -> str:
    label_y = f'transform="rotate(-90)" x="{-(TOP + (HEIGHT - TOP - BOTTOM) / 2)}" y="14"'
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
            f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
            *body,
            f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) / 2}" y="{HEIGHT - 8}" font-size="12" '
            f'text-anchor="middle">{escape(xlabel)}</text>',
            f'<text {label_y} font-size="12" text-anchor="middle">{escape(ylabel)}</text>',
            "</svg>",
        ]
    )


def line_plot(
    series: dict[str, list[Point]],
    title: str,
    xlabel: str,
    ylabel: str,
    markers: bool = False,
    vline: tuple[float, str] | None = None,
) -> str:
    """Lines (one per series, legend on the right) on linear axes."""
    points = [p for s in series.values() for p in s]
    xs = [p[0] for p in points] + ([vline[0]] if vline else [])
    ys = [p[1] for p in points]
    xt = ticks(min(xs, default=0.0), max(xs, default=1.0))
    yt = ticks(min(0.0, *ys) if ys else 0.0, max(ys, default=1.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - xt[0]) / (xt[-1] - xt[0]) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - (y - yt[0]) / (yt[-1] - yt[0]) * plot_h

    body = _grid(xt, yt, sx, sy)
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(
            f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(pts)
        )
        if path:
            body.append(
                f'<path class="series" d="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        if markers:
            body += [
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}"/>'
                for x, y in pts
            ]
        body.append(_legend(i, name, color))
    if vline is not None:
        x = sx(vline[0])
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
            'stroke="#d62728" stroke-dasharray="5,4"/>'
        )
        body.append(
            f'<text x="{x + 4:.1f}" y="{TOP + 12}" font-size="11" fill="#d62728">'
            f"{escape(vline[1])}</text>"
        )
    return _frame(title, xlabel, ylabel, body)


def bar_plot(rows: list[tuple[str, list[float]]], parts: list[str], title: str, xlabel: str) -> str:
    """Horizontal bars, one per row, stacked from ``parts`` (legend on the right)."""
    totals = [sum(values) for _, values in rows]
    xt = ticks(0.0, max(totals, default=1.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    band = plot_h / max(len(rows), 1)

    def sx(x: float) -> float:
        return LEFT + 110 + x / xt[-1] * (plot_w - 110)

    body = [
        f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
        f'stroke="#ddd"/><text x="{sx(t):.1f}" y="{TOP + plot_h + 14}" font-size="10" '
        f'text-anchor="middle">{_num(t)}</text>'
        for t in xt
    ]
    for i, (label, values) in enumerate(rows):
        y = TOP + i * band
        body.append(
            f'<text x="{LEFT + 76}" y="{y + band / 2 + 4:.1f}" font-size="11" '
            f'text-anchor="end">{escape(label[:26])}</text>'
        )
        x = 0.0
        for j, v in enumerate(values):
            body.append(
                f'<rect class="bar" x="{sx(x):.1f}" y="{y + band * 0.15:.1f}" '
                f'width="{max(sx(x + v) - sx(x), 0):.1f}" height="{band * 0.7:.1f}" '
                f'fill="{COLORS[j % len(COLORS)]}"><title>{escape(label)}: {escape(parts[j])} '
                f"{v:.3g}</title></rect>"
            )
            x += v
    if len(parts) > 1:
        body += [_legend(j, part, COLORS[j % len(COLORS)]) for j, part in enumerate(parts)]
    return _frame(title, xlabel, "", body)


def _grid(xt: list[float], yt: list[float], sx: Scale, sy: Scale) -> list[str]:
    left, right = sx(xt[0]), sx(xt[-1])
    top, bottom = sy(yt[-1]), sy(yt[0])
    out = []
    for t in xt:
        out.append(
            f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top:.1f}" y2="{bottom:.1f}" '
            f'stroke="#eee"/><text x="{sx(t):.1f}" y="{bottom + 14:.1f}" font-size="10" '
            f'text-anchor="middle">{_num(t)}</text>'
        )
    for t in yt:
        out.append(
            f'<line x1="{left:.1f}" x2="{right:.1f}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
            f'stroke="#eee"/><text x="{left - 4:.1f}" y="{sy(t) + 3:.1f}" font-size="10" '
            f'text-anchor="end">{_num(t)}</text>'
        )
    out.append(
        f'<rect x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" '
        f'height="{bottom - top:.1f}" fill="none" stroke="#999"/>'
    )
    return out


def _legend(i: int, name: str, color: str) -> str:
    x, y = WIDTH - RIGHT + 12, TOP + 6 + i * 16
    return (
        f'<rect x="{x}" y="{y}" width="10" height="10" fill="{color}"/>'
        f'<text x="{x + 14}" y="{y + 9}" font-size="11">{escape(name[:18])}</text>'
    )
