"""Rendering scenes to small RGB images with PIL.

Shapes are defined once as drawing parts in unit coordinates ([-1, 1], y down) and scaled
to each object's radius. Both meanings of an ambiguous word get clearly different parts
(a bow tie is two triangles and a knot; an archery bow is a curved limb and a string).
Drawing happens at twice the target size and is box-downsampled, which anti-aliases the
tiny shapes while staying around a millisecond per 64 px image.
"""

from __future__ import annotations

import math
from functools import lru_cache

from PIL import Image, ImageDraw

from .scene import SIZE_RADIUS, Scene

COLOUR_RGB = {
    "red": (220, 40, 40),
    "blue": (40, 80, 220),
    "green": (30, 160, 50),
    "yellow": (245, 215, 35),
    "black": (25, 25, 25),
    "white": (250, 250, 250),
    "brown": (135, 80, 35),
    "grey": (128, 128, 128),
}
OUTLINE_RGB = (20, 20, 20)
SUPERSAMPLE = 2

Point = tuple[float, float]


def _regular_polygon(n: int, radius: float, start_angle: float) -> list[Point]:
    return [
        (radius * math.cos(start_angle + 2 * math.pi * k / n), radius * math.sin(start_angle + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _star() -> list[Point]:
    outer = _regular_polygon(5, 1.0, -math.pi / 2)
    inner = _regular_polygon(5, 0.42, -math.pi / 2 + math.pi / 5)
    return [p for pair in zip(outer, inner) for p in pair]


def _heart() -> list[Point]:
    # The classic parametric heart, scaled into the unit square.
    points = []
    for k in range(24):
        t = 2 * math.pi * k / 24
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        points.append((x / 17, -y / 17 - 0.1))
    return points


def _cloud() -> list[Point]:
    # Flat bottom, three bumps on top.
    bumps = [(-0.55, 0.1, 0.45), (0.0, -0.15, 0.6), (0.55, 0.1, 0.45)]
    top = []
    for cx, cy, r in bumps:
        for k in range(7):
            angle = math.pi + math.pi * k / 6
            top.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return [(-1.0, 0.5)] + top + [(1.0, 0.5)]


def _bow_limb() -> list[Point]:
    # A thick crescent bulging to the left; the string (a separate line) closes it on the right.
    angles = [math.pi / 2 + math.pi * k / 10 for k in range(11)]
    outer = [(0.5 + 1.3 * math.cos(a), 0.95 * math.sin(a)) for a in angles]
    inner = [(0.5 + 0.8 * math.cos(a), 0.6 * math.sin(a)) for a in reversed(angles)]
    return outer + inner


def _baseball_bat() -> list[Point]:
    # A tapered stick from the handle (bottom left) to the barrel (top right).
    along = (math.sqrt(0.5), -math.sqrt(0.5))
    across = (math.sqrt(0.5), math.sqrt(0.5))
    outline = [(-1.0, 0.12), (-0.2, 0.18), (1.0, 0.38), (1.0, -0.38), (-0.2, -0.18), (-1.0, -0.12)]
    return [(a * along[0] + c * across[0], a * along[1] + c * across[1]) for a, c in outline]


def _bat_wings() -> list[Point]:
    right = [(0.0, -0.35), (0.15, -0.75), (0.28, -0.3), (0.6, -0.8), (1.0, -0.45), (0.82, 0.15), (0.6, 0.05), (0.42, 0.45), (0.24, 0.2), (0.0, 0.6)]
    left = [(-x, y) for x, y in reversed(right[1:-1])]
    return right + left


# Each part: ("polygon", points) | ("ellipse", box) | ("line", points, width) | ("hole", box).
# Holes and lines are drawn in the outline colour, so they read the same on any object colour.
SHAPE_PARTS = {
    "circle": [("ellipse", (-1.0, -1.0, 1.0, 1.0))],
    "square": [("polygon", [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)])],
    "triangle": [("polygon", [(0.0, -1.0), (0.95, 0.8), (-0.95, 0.8)])],
    "star": [("polygon", _star())],
    "heart": [("polygon", _heart())],
    "cloud": [("polygon", _cloud())],
    "bow_tie": [
        ("polygon", [(-1.0, -0.6), (0.0, 0.0), (-1.0, 0.6)]),
        ("polygon", [(1.0, -0.6), (0.0, 0.0), (1.0, 0.6)]),
        ("ellipse", (-0.22, -0.28, 0.22, 0.28)),
    ],
    "bow_weapon": [("polygon", _bow_limb()), ("line", [(0.5, -0.95), (0.5, 0.95)], 0.08)],
    "bat_animal": [("polygon", _bat_wings())],
    "bat_club": [("polygon", _baseball_bat()), ("ellipse", (-0.85, 0.55, -0.55, 0.85))],
    "nut_food": [("ellipse", (-0.75, -1.0, 0.75, 1.0)), ("line", [(0.0, -0.9), (0.0, 0.9)], 0.1)],
    "nut_hardware": [("polygon", _regular_polygon(6, 1.0, 0.0)), ("hole", (-0.45, -0.45, 0.45, 0.45))],
    "crane_bird": [
        ("ellipse", (-0.6, -0.1, 0.5, 0.4)),
        ("line", [(0.3, 0.0), (0.5, -0.8)], 0.12),
        ("ellipse", (0.35, -0.98, 0.7, -0.68)),
        ("line", [(0.68, -0.85), (1.0, -0.78)], 0.08),
        ("line", [(-0.15, 0.35), (-0.2, 1.0)], 0.08),
        ("line", [(0.1, 0.35), (0.15, 1.0)], 0.08),
    ],
    "crane_machine": [
        ("polygon", [(-0.55, 1.0), (-0.55, -0.8), (-0.35, -0.8), (-0.35, 1.0)]),
        ("polygon", [(-0.9, -1.0), (1.0, -1.0), (1.0, -0.78), (-0.9, -0.78)]),
        ("polygon", [(-0.85, 0.8), (-0.05, 0.8), (-0.05, 1.0), (-0.85, 1.0)]),
        ("line", [(0.85, -0.8), (0.85, 0.2)], 0.06),
        ("hole", (0.73, 0.15, 0.97, 0.4)),
    ],
}


def _draw_background(name: str, side: int) -> Image.Image:
    image = Image.new("RGB", (side, side))
    draw = ImageDraw.Draw(image)
    if name == "plain":
        draw.rectangle((0, 0, side, side), fill=(232, 222, 200))
    elif name == "sky":
        # Light blue, paler towards the horizon.
        for y in range(side):
            t = y / max(side - 1, 1)
            draw.line((0, y, side, y), fill=(int(150 + 80 * t), int(200 + 40 * t), 245))
    elif name == "grass":
        draw.rectangle((0, 0, side, side), fill=(160, 205, 130))
        step = max(side // 16, 2)
        for x in range(0, side, step):
            for y in range(step, side + step, 2 * step):
                draw.line((x, y, x + step // 2, y - step), fill=(120, 175, 95), width=1)
    elif name == "wall":
        draw.rectangle((0, 0, side, side), fill=(205, 160, 130))
        brick_h = max(side // 8, 2)
        for row, y in enumerate(range(0, side, brick_h)):
            draw.line((0, y, side, y), fill=(230, 215, 195), width=1)
            offset = (row % 2) * brick_h
            for x in range(offset, side, 2 * brick_h):
                draw.line((x, y, x, y + brick_h), fill=(230, 215, 195), width=1)
    else:
        raise ValueError(f"unknown background {name!r}")
    return image


@lru_cache(maxsize=64)
def _background(name: str, side: int) -> Image.Image:
    return _draw_background(name, side)


def _draw_object(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, fill: tuple, outline_width: int) -> None:
    def to_pixels(points):
        return [(cx + x * radius, cy + y * radius) for x, y in points]

    for part in SHAPE_PARTS[shape]:
        kind = part[0]
        if kind == "polygon":
            draw.polygon(to_pixels(part[1]), fill=fill, outline=OUTLINE_RGB, width=outline_width)
        elif kind == "ellipse":
            x0, y0, x1, y1 = part[1]
            draw.ellipse((cx + x0 * radius, cy + y0 * radius, cx + x1 * radius, cy + y1 * radius), fill=fill, outline=OUTLINE_RGB, width=outline_width)
        elif kind == "hole":
            x0, y0, x1, y1 = part[1]
            draw.ellipse((cx + x0 * radius, cy + y0 * radius, cx + x1 * radius, cy + y1 * radius), fill=OUTLINE_RGB)
        elif kind == "line":
            draw.line(to_pixels(part[1]), fill=OUTLINE_RGB, width=max(1, round(part[2] * radius)))


def render_scene(scene: Scene, image_size: int) -> Image.Image:
    """The scene as an RGB image of side `image_size`; a pure function of the scene."""
    side = image_size * SUPERSAMPLE
    image = _background(scene.background, side).copy()
    draw = ImageDraw.Draw(image)
    outline_width = max(1, side // 64)
    for group in scene.groups:
        radius = SIZE_RADIUS[group.size] * side
        for x, y in group.positions:
            _draw_object(draw, group.shape, x * side, y * side, radius, COLOUR_RGB[group.colour], outline_width)
    return image.resize((image_size, image_size), Image.Resampling.BOX)
