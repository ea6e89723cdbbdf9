"""The sentence plan shared by all languages, so every language says the same thing.

A description is: figure [relation ground] followed by the remaining groups as a
coordinated list ("X left of Y, Z and W"). Templates are numbered families; family k means
the same frame in every language ("The photo shows ..." / "Das Foto zeigt ..." / ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..scene import ObjectGroup, Scene

TEMPLATE_FAMILIES = ("photo_shows", "there_is", "picture_of", "in_picture")


@dataclass(frozen=True)
class SentencePlan:
    figure: ObjectGroup
    relation: str | None
    ground: ObjectGroup | None
    extras: tuple[ObjectGroup, ...]

    @property
    def plural_subject(self) -> bool:
        """Whether a verb agreeing with the described objects must be plural."""
        return self.figure.count > 1 or bool(self.extras)


def plan_sentence(scene: Scene) -> SentencePlan:
    if len(scene.groups) == 1:
        return SentencePlan(scene.groups[0], None, None, ())
    return SentencePlan(scene.groups[0], scene.relation, scene.groups[1], scene.groups[2:])


def coordinate(items: list[str], comma: str, conjunction: str) -> str:
    """'a', 'a and b', 'a, b and c' with the language's comma and conjunction."""
    if len(items) == 1:
        return items[0]
    return comma.join(items[:-1]) + conjunction + items[-1]
