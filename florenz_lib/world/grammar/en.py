"""English: article or numeral, size, colour, noun; 'there is/are' agrees with the subject."""

from __future__ import annotations

from ..scene import ObjectGroup, Scene
from .common import coordinate, plan_sentence

PHOTO_PREFIX = "The photo shows"

# Both meanings of an ambiguous word share the English noun.
NOUNS = {
    "circle": ("circle", "circles"),
    "square": ("square", "squares"),
    "triangle": ("triangle", "triangles"),
    "star": ("star", "stars"),
    "heart": ("heart", "hearts"),
    "cloud": ("cloud", "clouds"),
    "bow_tie": ("bow", "bows"),
    "bow_weapon": ("bow", "bows"),
    "bat_animal": ("bat", "bats"),
    "bat_club": ("bat", "bats"),
    "nut_food": ("nut", "nuts"),
    "nut_hardware": ("nut", "nuts"),
    "crane_bird": ("crane", "cranes"),
    "crane_machine": ("crane", "cranes"),
}
ADJECTIVES = {
    "small": "small", "big": "big",
    "red": "red", "blue": "blue", "green": "green", "yellow": "yellow",
    "black": "black", "white": "white", "brown": "brown", "grey": "grey",
}
NUMBERS = {2: "two", 3: "three"}
RELATIONS = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "above": "above",
    "below": "below",
    "next_to": "next to",
}


def noun_phrase(group: ObjectGroup) -> str:
    # The size adjective always comes first and starts with a consonant, so "a" (never "an").
    determiner = "a" if group.count == 1 else NUMBERS[group.count]
    noun = NOUNS[group.shape][group.count > 1]
    return f"{determiner} {ADJECTIVES[group.size]} {ADJECTIVES[group.colour]} {noun}"


def realise(scene: Scene, family: str) -> str:
    plan = plan_sentence(scene)
    clause = noun_phrase(plan.figure)
    if plan.ground is not None:
        clause += f" {RELATIONS[plan.relation]} {noun_phrase(plan.ground)}"
    body = coordinate([clause] + [noun_phrase(g) for g in plan.extras], ", ", " and ")
    verb = "are" if plan.plural_subject else "is"
    if family == "photo_shows":
        return f"{PHOTO_PREFIX} {body}."
    if family == "there_is":
        return f"There {verb} {body}."
    if family == "picture_of":
        return f"A picture of {body}."
    if family == "in_picture":
        return f"In the picture there {verb} {body}."
    raise ValueError(f"unknown template family {family!r}")
