"""Spanish: gender and number agreement; size adjectives before the noun ("grande" shortens
to "gran" before a singular noun), colours after it."""

from __future__ import annotations

from ..scene import ObjectGroup, Scene
from .common import coordinate, plan_sentence

PHOTO_PREFIX = "La foto muestra"

# shape -> (gender, singular, plural)
NOUNS = {
    "circle": ("m", "círculo", "círculos"),
    "square": ("m", "cuadrado", "cuadrados"),
    "triangle": ("m", "triángulo", "triángulos"),
    "star": ("f", "estrella", "estrellas"),
    "heart": ("m", "corazón", "corazones"),
    "cloud": ("f", "nube", "nubes"),
    "bow_tie": ("f", "pajarita", "pajaritas"),
    "bow_weapon": ("m", "arco", "arcos"),
    "bat_animal": ("m", "murciélago", "murciélagos"),
    "bat_club": ("m", "bate", "bates"),
    "nut_food": ("f", "nuez", "nueces"),
    "nut_hardware": ("f", "tuerca", "tuercas"),
    "crane_bird": ("f", "grulla", "grullas"),
    "crane_machine": ("f", "grúa", "grúas"),
}
# adjective -> (masc. sg., fem. sg., masc. pl., fem. pl.)
ADJECTIVES = {
    "small": ("pequeño", "pequeña", "pequeños", "pequeñas"),
    "big": ("gran", "gran", "grandes", "grandes"),  # prenominal apocope of "grande"
    "red": ("rojo", "roja", "rojos", "rojas"),
    "blue": ("azul", "azul", "azules", "azules"),
    "green": ("verde", "verde", "verdes", "verdes"),
    "yellow": ("amarillo", "amarilla", "amarillos", "amarillas"),
    "black": ("negro", "negra", "negros", "negras"),
    "white": ("blanco", "blanca", "blancos", "blancas"),
    "brown": ("marrón", "marrón", "marrones", "marrones"),
    "grey": ("gris", "gris", "grises", "grises"),
}
NUMBERS = {2: "dos", 3: "tres"}
RELATIONS = {
    "left_of": "a la izquierda de",
    "right_of": "a la derecha de",
    "above": "encima de",
    "below": "debajo de",
    "next_to": "al lado de",
}


def noun_phrase(group: ObjectGroup) -> str:
    gender, singular, plural = NOUNS[group.shape]
    form = (gender == "f") + 2 * (group.count > 1)
    if group.count == 1:
        determiner = "una" if gender == "f" else "un"
    else:
        determiner = NUMBERS[group.count]
    noun = plural if group.count > 1 else singular
    return f"{determiner} {ADJECTIVES[group.size][form]} {noun} {ADJECTIVES[group.colour][form]}"


def realise(scene: Scene, family: str) -> str:
    plan = plan_sentence(scene)
    clause = noun_phrase(plan.figure)
    if plan.ground is not None:
        clause += f" {RELATIONS[plan.relation]} {noun_phrase(plan.ground)}"
    body = coordinate([clause] + [noun_phrase(g) for g in plan.extras], ", ", " y ")
    if family == "photo_shows":
        return f"{PHOTO_PREFIX} {body}."
    if family == "there_is":
        return f"Hay {body}."
    if family == "picture_of":
        return f"Una imagen de {body}."
    if family == "in_picture":
        verb = "se ven" if plan.plural_subject else "se ve"
        return f"En la imagen {verb} {body}."
    raise ValueError(f"unknown template family {family!r}")
