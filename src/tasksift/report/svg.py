"""Inline SVG figures whose points and bars carry their text in ``<title>`` elements, shown by the browser on
hover: the map of pool, target and selection, and the bar chart of methods' scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tasksift.report.page import escape, trim

HOVER_CHARS = 200
_W, _H, _PAD = 760, 540, 40


@dataclass
class Layer:
    """Points of one kind on the map: 2-D positions, their hover texts, colour, radius and legend label."""

    points: np.ndarray
    titles: Sequence[str]
    color: str
    radius: float
    label: str


def map_svg(layers: Sequence[Layer], title: str) -> str:
    """A scatter map of ``layers`` (drawn in order, later on top), scaled together into the frame."""
    every = np.concatenate([layer.points for layer in layers if len(layer.points)] or [np.zeros((1, 2))])
    lo, hi = every.min(axis=0), every.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    parts = [f'<svg id="map" viewBox="0 0 {_W} {_H}" width="{_W}" '
             f'height="{_H}" role="img" aria-label="{escape(title)}">',
             f'<text x="{_W / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>']
    for i, layer in enumerate(layers):
        xy = _PAD + (layer.points - lo) / span * np.array([_W - 2 * _PAD, _H - 2 * _PAD - 30])
        xy[:, 1] = _H - xy[:, 1] - 10  # y grows upwards
        parts.append(f'<g class="layer" fill="{layer.color}" fill-opacity="0.8">')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{layer.radius}"><title>{escape(trim(t, HOVER_CHARS))}'
                     f"</title></circle>" for (x, y), t in zip(xy, layer.titles, strict=True))
        parts.append("</g>")
        parts.append(f'<circle cx="{_PAD + 8}" cy="{42 + 18 * i}" r="5" fill="{layer.color}"/>'
                     f'<text x="{_PAD + 20}" y="{46 + 18 * i}" font-size="12">{escape(layer.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass
class Bar:
    """One bar: its label, mean, standard deviation and colour."""

    label: str
    mean: float
    std: float
    color: str


def bars_svg(bars: Sequence[Bar], metric: str, references: dict[str, float]) -> str:
    """Horizontal bars of ``metric`` (mean with a one-std whisker) and a dashed line at each reference value
    (random, the full pool), so every method reads against them."""
    top = max([b.mean + b.std for b in bars] + list(references.values()) + [1e-9])
    low = min([0.0] + [b.mean - b.std for b in bars])
    left, width, row = 150, 520, 26
    height = 50 + row * len(bars) + 20 * len(references)

    def x(value: float) -> float:
        return left + (value - low) / (top - low) * width

    parts = [f'<svg id="scores-chart" viewBox="0 0 {left + width + 90} {height}" '
             f'width="{left + width + 90}" height="{height}" role="img" aria-label="{escape(metric)} by method">',
             f'<text x="{left}" y="18" font-size="13">{escape(metric)} (mean over seeds, whisker ±1 std)</text>']
    for i, bar in enumerate(bars):
        y = 30 + i * row
        tip = f"{bar.label}: {bar.mean:.4f} ± {bar.std:.4f}"
        parts.append(f'<text x="{left - 6}" y="{y + 15}" font-size="12" text-anchor="end">{escape(bar.label)}</text>'
                     f'<rect x="{x(low):.1f}" y="{y}" width="{x(bar.mean) - x(low):.1f}" height="{row - 8}" '
                     f'fill="{bar.color}"><title>{escape(tip)}</title></rect>'
                     f'<line x1="{x(bar.mean - bar.std):.1f}" x2="{x(bar.mean + bar.std):.1f}" y1="{y + 9}" '
                     f'y2="{y + 9}" stroke="#333"/>'
                     f'<text x="{x(bar.mean + bar.std) + 4:.1f}" y="{y + 14}" font-size="11">{bar.mean:.4f}</text>')
    bottom = 30 + len(bars) * row
    for j, (name, value) in enumerate(references.items()):
        parts.append(f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="26" y2="{bottom}" stroke="#d62728" '
                     f'stroke-dasharray="4 3"><title>{escape(name)}: {value:.4f}</title></line>'
                     f'<text x="{x(value):.1f}" y="{bottom + 14 + 20 * j}" font-size="11" fill="#d62728" '
                     f'text-anchor="middle">{escape(name)} {value:.4f}</text>')
    parts.append("</svg>")
    return "".join(parts)
