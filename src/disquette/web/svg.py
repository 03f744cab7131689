"""Charts drawn on the server as SVG markup: no script, no inline style (the CSP allows
neither), so a chart is plain markup the templates insert."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape


def sparkline(
    values: Sequence[float], *, width: int = 160, height: int = 32, label: str = ""
) -> Markup:
    """A polyline of ``values`` (oldest first) scaled to the box; an empty chart without
    values. ``label`` becomes the chart's accessible title."""
    title = f"<title>{escape(label)}</title>" if label else ""
    if not values:
        return Markup(
            f'<svg class="spark" width="{width}" height="{height}" role="img" '
            f'viewBox="0 0 {width} {height}">{title}</svg>'
        )
    top = max(values) or 1.0
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - 2 - (value / top) * (height - 4):.1f}"
        for i, value in enumerate(values)
    )
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}">{title}'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/>'
        "</svg>"
    )
