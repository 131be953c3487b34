"""A small server-rendered SVG line chart (clinician page and indicator reports) of scores over time (NRS 0–10, RMDQ 0–24): no script, no library."""
from __future__ import annotations

from datetime import date
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 16, 16, 36
# Okabe–Ito colours (distinguishable with colour-blindness), with distinct markers as well
SERIES_STYLE = [("#0072B2", "circle"), ("#D55E00", "square"), ("#009E73", "diamond")]


def _marker(kind: str, x: float, y: float, colour: str) -> str:
    if kind == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"/>'
    if kind == "diamond":
        corners = f"M{x:.1f} {y - 5:.1f} L{x + 5:.1f} {y:.1f} L{x:.1f} {y + 5:.1f} L{x - 5:.1f} {y:.1f} Z"
        return f'<path d="{corners}" fill="{colour}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'


def line_chart(series: list[tuple[str, float, list[tuple[date, float]]]], *, title: str, description: str,
               chart_id: str = "plot") -> Markup:
    """`series`: (label, maximum of its scale, [(date, value)]). Each series is scaled to its own maximum
    (the y axis reads 0–100 % of the scale), so NRS and RMDQ share one chart. `chart_id` keeps the ids of
    several charts on one page apart."""
    points = [d for _, _, values in series for d, _ in values]
    if not points:
        return Markup("")
    first, last = min(points), max(points)
    span = max((last - first).days, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(d: date) -> float:
        return LEFT + ((d - first).days / span) * plot_w if last != first else LEFT + plot_w / 2

    def y_of(value: float, maximum: float) -> float:
        return TOP + plot_h - (max(0.0, min(value, maximum)) / maximum) * plot_h

    parts = [
        f'<svg class="plot" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(description)}</desc>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#767676"/>',
    ]
    for frac in (0.25, 0.5, 0.75):
        y = TOP + plot_h * (1 - frac)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d0d0"/>')
    parts.append(f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" font-size="11" fill="#1b1b1b">max</text>')
    parts.append(f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="11" fill="#1b1b1b">0</text>')
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 18}" font-size="11" fill="#1b1b1b">{first.isoformat()}</text>')
    if last != first:
        parts.append(f'<text x="{LEFT + plot_w}" y="{HEIGHT - 18}" text-anchor="end" font-size="11" '
                     f'fill="#1b1b1b">{last.isoformat()}</text>')
    legend_x = LEFT
    for i, (label, maximum, values) in enumerate(series):
        colour, kind = SERIES_STYLE[i % len(SERIES_STYLE)]
        ordered = sorted(values)
        if len(ordered) > 1:
            path = " ".join(f"{'M' if j == 0 else 'L'}{x_of(d):.1f} {y_of(v, maximum):.1f}"
                            for j, (d, v) in enumerate(ordered))
            parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for d, v in ordered:
            parts.append(_marker(kind, x_of(d), y_of(v, maximum), colour))
        parts.append(_marker(kind, legend_x + 4, HEIGHT - 6, colour))
        text = f"{label} (0–{maximum:g})"
        parts.append(f'<text x="{legend_x + 12}" y="{HEIGHT - 2}" font-size="11" fill="#1b1b1b">{escape(text)}</text>')
        legend_x += 16 + 7 * len(text)
    parts.append("</svg>")
    return Markup("".join(parts))
