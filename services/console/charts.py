"""Charts as inline SVG, drawn on the server: no script, no front-end build."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 180
PAD_LEFT, PAD_BOTTOM, PAD_TOP, PAD_RIGHT = 48, 24, 12, 12
COLOURS = ("#2f6fb0", "#d9822b", "#c23030", "#29a634")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step: float = 10.0 ** len(str(int(value))) / 10
    for factor in (1, 2, 2.5, 5, 10):
        if value <= step * factor:
            return step * factor
    return value


def line_chart(
    title: str, series: Sequence[Series], labels: Sequence[str], unit: str = ""
) -> Markup:
    """Lines over ``labels`` (x axis: first, middle, last shown); gaps where None."""
    points = max((len(s.values) for s in series), default=0)
    top = _nice_max(max((v for s in series for v in s.values if v is not None), default=0.0))
    inner_w = WIDTH - PAD_LEFT - PAD_RIGHT
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(i: int) -> float:
        return PAD_LEFT + (inner_w * i / max(points - 1, 1))

    def y(v: float) -> float:
        return PAD_TOP + inner_h * (1 - v / top)

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD_LEFT}" y1="{y(0):.1f}" x2="{WIDTH - PAD_RIGHT}" y2="{y(0):.1f}" '
        'stroke="#999"/>',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{y(0):.1f}" stroke="#999"/>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end" font-size="10">'
        f"{top:g}{escape(unit)}</text>",
        f'<text x="{PAD_LEFT - 4}" y="{y(0):.1f}" text-anchor="end" font-size="10">0</text>',
    ]
    for i in sorted({0, points // 2, points - 1} if points else set()):
        if i < len(labels):
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="10">'
                f"{escape(labels[i])}</text>"
            )
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        runs: list[list[str]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(i):.1f},{y(v):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            elif run:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                    f'points="{" ".join(run)}"/>'
                )
        parts.append(
            f'<text x="{PAD_LEFT + 8 + 150 * n}" y="{PAD_TOP + 8}" font-size="11" '
            f'fill="{colour}">■ {escape(s.name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text part is escaped above
