"""Scene graphs of the synthetic world and their random sampling.

A scene is a background plus 1..max_objects object groups. A group is `count` identical
objects (same shape, colour and size). When there are two or more groups, the first group
(the figure) stands in a spatial relation to the second (the ground); the stored positions
satisfy that relation, so the renderer and the grammar never disagree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

PLAIN_SHAPES = ("circle", "square", "triangle", "star", "heart", "cloud")
# English word -> its two meanings. Each meaning is its own shape (drawn differently) whose
# translations differ, so translating the word needs the picture (a CoMMuTE analogue).
AMBIGUOUS_WORDS = {
    "bow": ("bow_tie", "bow_weapon"),
    "bat": ("bat_animal", "bat_club"),
    "nut": ("nut_food", "nut_hardware"),
    "crane": ("crane_bird", "crane_machine"),
}
SHAPES = PLAIN_SHAPES + tuple(shape for meanings in AMBIGUOUS_WORDS.values() for shape in meanings)
COLOURS = ("red", "blue", "green", "yellow", "black", "white", "brown", "grey")
SIZES = ("small", "big")
BACKGROUNDS = ("plain", "grass", "sky", "wall")
# Relation of the first group (figure) to the second (ground), e.g. figure left_of ground.
RELATIONS = ("left_of", "right_of", "above", "below", "next_to")
MAX_COUNT = 3
# More groups than this do not fit side by side without overlapping.
MAX_GROUPS = 4

# Object radius as a fraction of the image side.
SIZE_RADIUS = {"small": 0.06, "big": 0.1}
# Object centres of a group relative to the group centre, in units of the object radius.
GROUP_OFFSETS = {
    1: ((0.0, 0.0),),
    2: ((-1.1, 0.0), (1.1, 0.0)),
    3: ((-1.1, 0.65), (1.1, 0.65), (0.0, -1.25)),
}
# Radius of the circle enclosing a whole group, in units of the object radius.
GROUP_EXTENT = {1: 1.0, 2: 2.1, 3: 2.3}
_POSITION_DECIMALS = 4
_LAYOUT_TRIES = 200


@dataclass(frozen=True)
class ObjectGroup:
    shape: str
    colour: str
    size: str
    count: int
    # Object centres as (x, y) fractions of the image side; y grows downwards.
    positions: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Scene:
    background: str
    groups: tuple[ObjectGroup, ...]
    relation: str | None  # None exactly when there is a single group


def group_radius(size: str, count: int) -> float:
    return SIZE_RADIUS[size] * GROUP_EXTENT[count]


def group_positions(centre: tuple[float, float], size: str, count: int) -> tuple[tuple[float, float], ...]:
    radius = SIZE_RADIUS[size]
    return tuple(
        (round(centre[0] + dx * radius, _POSITION_DECIMALS), round(centre[1] + dy * radius, _POSITION_DECIMALS))
        for dx, dy in GROUP_OFFSETS[count]
    )


def scene_to_json(scene: Scene) -> str:
    return json.dumps(asdict(scene), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def scene_from_json(text: str) -> Scene:
    data = json.loads(text)
    groups = tuple(
        ObjectGroup(
            shape=g["shape"],
            colour=g["colour"],
            size=g["size"],
            count=g["count"],
            positions=tuple((x, y) for x, y in g["positions"]),
        )
        for g in data["groups"]
    )
    return Scene(background=data["background"], groups=groups, relation=data["relation"])


def _choice(rng: np.random.Generator, options: tuple):
    return options[int(rng.integers(len(options)))]


def _place_figure(rng: np.random.Generator, ground: tuple[float, float], relation: str, gap: float) -> tuple[float, float]:
    """Centre of the figure group so that `figure relation ground` holds visibly."""
    if relation == "next_to":
        # Close, on either side horizontally.
        distance = gap + rng.uniform(0.0, 0.05)
        direction = (_choice(rng, (-1.0, 1.0)), 0.0)
    else:
        distance = gap + rng.uniform(0.04, 0.25)
        direction = {"left_of": (-1.0, 0.0), "right_of": (1.0, 0.0), "above": (0.0, -1.0), "below": (0.0, 1.0)}[relation]
    # Off-axis jitter small enough that the relation stays the dominant direction.
    jitter = rng.uniform(-0.25, 0.25) * distance
    return (
        ground[0] + direction[0] * distance + direction[1] * jitter,
        ground[1] + direction[1] * distance + direction[0] * jitter,
    )


def _layout(rng: np.random.Generator, radii: list[float], relation: str | None) -> list[tuple[float, float]] | None:
    """Non-overlapping group centres inside the image, or None if this attempt failed."""
    centres: list[tuple[float, float]] = []
    for index, radius in enumerate(radii):
        if index == 0 and relation is not None:
            continue  # the figure is placed relative to the ground (index 1)
        centre = (rng.uniform(radius, 1 - radius), rng.uniform(radius, 1 - radius))
        if index == 1 and relation is not None:
            figure = _place_figure(rng, centre, relation, radii[0] + radius)
            if not (radii[0] <= figure[0] <= 1 - radii[0] and radii[0] <= figure[1] <= 1 - radii[0]):
                return None
            centres.append(figure)
        placed_radii = radii[: len(centres)]
        if any(np.hypot(centre[0] - c[0], centre[1] - c[1]) < radius + r for c, r in zip(centres, placed_radii)):
            return None
        centres.append(centre)
    return centres


def sample_scene(rng: np.random.Generator, max_objects: int) -> Scene:
    """A random scene with 1..max_objects groups; all randomness comes from `rng`."""
    if not 1 <= max_objects <= MAX_GROUPS:
        raise ValueError(f"max_objects must be in 1..{MAX_GROUPS}, got {max_objects}")
    while True:
        n_groups = int(rng.integers(1, max_objects + 1))
        attributes = [
            (_choice(rng, SHAPES), _choice(rng, COLOURS), _choice(rng, SIZES), int(rng.integers(1, MAX_COUNT + 1)))
            for _ in range(n_groups)
        ]
        relation = _choice(rng, RELATIONS) if n_groups >= 2 else None
        background = _choice(rng, BACKGROUNDS)
        radii = [group_radius(size, count) for _, _, size, count in attributes]
        for _ in range(_LAYOUT_TRIES):
            centres = _layout(rng, radii, relation)
            if centres is not None:
                groups = tuple(
                    ObjectGroup(shape, colour, size, count, group_positions(centre, size, count))
                    for (shape, colour, size, count), centre in zip(attributes, centres)
                )
                return Scene(background=background, groups=groups, relation=relation)
        # These attributes do not fit (e.g. four groups of three big objects): draw new ones.
