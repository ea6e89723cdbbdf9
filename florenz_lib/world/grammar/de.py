"""German: gender, case (nominative, accusative, dative) and number agreement.

Singular groups take the indefinite article and mixed adjective endings; plural groups take
an uninflected numeral and strong endings. All relation prepositions here express location
and so govern the dative ("links von einem blauen Quadrat", "über zwei roten Kreisen").
"""

from __future__ import annotations

from ..scene import ObjectGroup, Scene
from .common import coordinate, plan_sentence

PHOTO_PREFIX = "Das Foto zeigt"

# shape -> (gender, singular, dative singular, plural, dative plural)
NOUNS = {
    "circle": ("m", "Kreis", "Kreis", "Kreise", "Kreisen"),
    "square": ("n", "Quadrat", "Quadrat", "Quadrate", "Quadraten"),
    "triangle": ("n", "Dreieck", "Dreieck", "Dreiecke", "Dreiecken"),
    "star": ("m", "Stern", "Stern", "Sterne", "Sternen"),
    "heart": ("n", "Herz", "Herzen", "Herzen", "Herzen"),
    "cloud": ("f", "Wolke", "Wolke", "Wolken", "Wolken"),
    "bow_tie": ("f", "Fliege", "Fliege", "Fliegen", "Fliegen"),
    "bow_weapon": ("m", "Bogen", "Bogen", "Bogen", "Bogen"),
    "bat_animal": ("f", "Fledermaus", "Fledermaus", "Fledermäuse", "Fledermäusen"),
    "bat_club": ("m", "Baseballschläger", "Baseballschläger", "Baseballschläger", "Baseballschlägern"),
    "nut_food": ("f", "Nuss", "Nuss", "Nüsse", "Nüssen"),
    "nut_hardware": ("f", "Mutter", "Mutter", "Muttern", "Muttern"),
    "crane_bird": ("m", "Kranich", "Kranich", "Kraniche", "Kranichen"),
    "crane_machine": ("m", "Kran", "Kran", "Kräne", "Kränen"),
}
ADJECTIVE_STEMS = {
    "small": "klein", "big": "groß",
    "red": "rot", "blue": "blau", "green": "grün", "yellow": "gelb",
    "black": "schwarz", "white": "weiß", "brown": "braun", "grey": "grau",
}
INDEFINITE_ARTICLE = {
    ("nom", "m"): "ein", ("nom", "f"): "eine", ("nom", "n"): "ein",
    ("acc", "m"): "einen", ("acc", "f"): "eine", ("acc", "n"): "ein",
    ("dat", "m"): "einem", ("dat", "f"): "einer", ("dat", "n"): "einem",
}
# Mixed declension (after ein-words).
MIXED_ENDINGS = {
    ("nom", "m"): "er", ("nom", "f"): "e", ("nom", "n"): "es",
    ("acc", "m"): "en", ("acc", "f"): "e", ("acc", "n"): "es",
    ("dat", "m"): "en", ("dat", "f"): "en", ("dat", "n"): "en",
}
# Strong plural declension (numerals zwei/drei do not inflect).
STRONG_PLURAL_ENDINGS = {"nom": "e", "acc": "e", "dat": "en"}
NUMBERS = {2: "zwei", 3: "drei"}
RELATIONS = {
    "left_of": "links von",
    "right_of": "rechts von",
    "above": "über",
    "below": "unter",
    "next_to": "neben",
}


def noun_phrase(group: ObjectGroup, case: str) -> str:
    gender, singular, dative_singular, plural, dative_plural = NOUNS[group.shape]
    if group.count == 1:
        determiner = INDEFINITE_ARTICLE[(case, gender)]
        ending = MIXED_ENDINGS[(case, gender)]
        noun = dative_singular if case == "dat" else singular
    else:
        determiner = NUMBERS[group.count]
        ending = STRONG_PLURAL_ENDINGS[case]
        noun = dative_plural if case == "dat" else plural
    size = ADJECTIVE_STEMS[group.size] + ending
    colour = ADJECTIVE_STEMS[group.colour] + ending
    return f"{determiner} {size} {colour} {noun}"


def body(scene: Scene, case: str) -> str:
    plan = plan_sentence(scene)
    clause = noun_phrase(plan.figure, case)
    if plan.ground is not None:
        clause += f" {RELATIONS[plan.relation]} {noun_phrase(plan.ground, 'dat')}"
    return coordinate([clause] + [noun_phrase(g, case) for g in plan.extras], ", ", " und ")


def realise(scene: Scene, family: str) -> str:
    if family == "photo_shows":
        return f"{PHOTO_PREFIX} {body(scene, 'acc')}."
    if family == "there_is":
        return f"Es gibt {body(scene, 'acc')}."
    if family == "picture_of":
        return f"Ein Bild von {body(scene, 'dat')}."
    if family == "in_picture":
        verb = "sind" if plan_sentence(scene).plural_subject else "ist"
        return f"Auf dem Bild {verb} {body(scene, 'nom')}."
    raise ValueError(f"unknown template family {family!r}")
