"""French: gender and number agreement; size adjectives before the noun, colours after;
'de' elides before 'un'/'une' ("à gauche d'un grand carré bleu")."""

from __future__ import annotations

from ..scene import ObjectGroup, Scene
from .common import coordinate, plan_sentence

PHOTO_PREFIX = "La photo montre"

# shape -> (gender, singular, plural)
NOUNS = {
    "circle": ("m", "cercle", "cercles"),
    "square": ("m", "carré", "carrés"),
    "triangle": ("m", "triangle", "triangles"),
    "star": ("f", "étoile", "étoiles"),
    "heart": ("m", "cœur", "cœurs"),
    "cloud": ("m", "nuage", "nuages"),
    "bow_tie": ("m", "nœud papillon", "nœuds papillon"),
    "bow_weapon": ("m", "arc", "arcs"),
    "bat_animal": ("f", "chauve-souris", "chauves-souris"),
    "bat_club": ("f", "batte", "battes"),
    "nut_food": ("f", "noix", "noix"),
    "nut_hardware": ("m", "écrou", "écrous"),
    "crane_bird": ("f", "grue", "grues"),  # French uses "grue" for both cranes
    "crane_machine": ("f", "grue", "grues"),
}
# adjective -> (masc. sg., fem. sg., masc. pl., fem. pl.); "marron" is invariable.
ADJECTIVES = {
    "small": ("petit", "petite", "petits", "petites"),
    "big": ("grand", "grande", "grands", "grandes"),
    "red": ("rouge", "rouge", "rouges", "rouges"),
    "blue": ("bleu", "bleue", "bleus", "bleues"),
    "green": ("vert", "verte", "verts", "vertes"),
    "yellow": ("jaune", "jaune", "jaunes", "jaunes"),
    "black": ("noir", "noire", "noirs", "noires"),
    "white": ("blanc", "blanche", "blancs", "blanches"),
    "brown": ("marron", "marron", "marron", "marron"),
    "grey": ("gris", "grise", "gris", "grises"),
}
NUMBERS = {2: "deux", 3: "trois"}
# All take "de" + the ground noun phrase.
RELATIONS = {
    "left_of": "à gauche",
    "right_of": "à droite",
    "above": "au-dessus",
    "below": "en dessous",
    "next_to": "à côté",
}


def noun_phrase(group: ObjectGroup) -> str:
    gender, singular, plural = NOUNS[group.shape]
    form = (gender == "f") + 2 * (group.count > 1)
    if group.count == 1:
        determiner = "une" if gender == "f" else "un"
    else:
        determiner = NUMBERS[group.count]
    noun = plural if group.count > 1 else singular
    return f"{determiner} {ADJECTIVES[group.size][form]} {noun} {ADJECTIVES[group.colour][form]}"


def with_de(phrase: str) -> str:
    """'de' + phrase, eliding before the article un/une."""
    if phrase.startswith(("un ", "une ")):
        return "d'" + phrase
    return "de " + phrase


def realise(scene: Scene, family: str) -> str:
    plan = plan_sentence(scene)
    clause = noun_phrase(plan.figure)
    if plan.ground is not None:
        clause += f" {RELATIONS[plan.relation]} {with_de(noun_phrase(plan.ground))}"
    items = [clause] + [noun_phrase(g) for g in plan.extras]
    if family == "picture_of":
        # "une image d'un X et d'une Y": the preposition is repeated before each conjunct.
        return f"Une image {coordinate([with_de(item) for item in items], ', ', ' et ')}."
    body = coordinate(items, ", ", " et ")
    if family == "photo_shows":
        return f"{PHOTO_PREFIX} {body}."
    if family == "there_is":
        return f"Il y a {body}."
    if family == "in_picture":
        return f"Sur l'image, on voit {body}."
    raise ValueError(f"unknown template family {family!r}")
