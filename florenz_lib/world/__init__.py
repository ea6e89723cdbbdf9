"""The synthetic world: procedurally generated scenes, their images, and their
descriptions in six languages (see DESIGN.md section 2)."""

from .generate import generate_world, validate_world_config
from .grammar import LANGS, LANGUAGE_NAMES, N_TEMPLATES, describe, language_prefix
from .render import render_scene
from .scene import (
    AMBIGUOUS_WORDS,
    BACKGROUNDS,
    COLOURS,
    RELATIONS,
    SHAPES,
    SIZES,
    ObjectGroup,
    Scene,
    sample_scene,
    scene_from_json,
    scene_to_json,
)

__all__ = [
    "AMBIGUOUS_WORDS", "BACKGROUNDS", "COLOURS", "LANGS", "LANGUAGE_NAMES", "N_TEMPLATES",
    "RELATIONS", "SHAPES", "SIZES", "ObjectGroup", "Scene", "describe", "generate_world",
    "language_prefix", "render_scene", "sample_scene", "scene_from_json", "scene_to_json",
    "validate_world_config",
]
