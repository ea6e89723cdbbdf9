"""Russian: case (nominative, genitive, instrumental), gender and number agreement.

No articles: a single object is a bare noun phrase. After 2-3 in the nominative the noun is
genitive singular and the adjectives genitive plural (masc./neut.) or nominative plural
(fem.): "два маленьких красных круга", "две маленькие красные звезды". In oblique cases
numeral, adjectives and noun all take that case in the plural: "слева от двух ... кругов".
"слева от", "справа от" govern the genitive; "над", "под", "рядом с" the instrumental.
"""

from __future__ import annotations

from ..scene import ObjectGroup, Scene
from .common import coordinate, plan_sentence

PHOTO_PREFIX = "На фото"

# shape -> gender and forms. "paucal" is the form after 2-3 in the nominative (genitive
# singular, which for the adjective+noun "летучая мышь" includes the adjective's plural).
NOUNS = {
    "circle": ("m", {"nom": "круг", "gen": "круга", "ins": "кругом", "paucal": "круга", "gen_pl": "кругов", "ins_pl": "кругами"}),
    "square": ("m", {"nom": "квадрат", "gen": "квадрата", "ins": "квадратом", "paucal": "квадрата", "gen_pl": "квадратов", "ins_pl": "квадратами"}),
    "triangle": ("m", {"nom": "треугольник", "gen": "треугольника", "ins": "треугольником", "paucal": "треугольника", "gen_pl": "треугольников", "ins_pl": "треугольниками"}),
    "star": ("f", {"nom": "звезда", "gen": "звезды", "ins": "звездой", "paucal": "звезды", "gen_pl": "звёзд", "ins_pl": "звёздами"}),
    "heart": ("n", {"nom": "сердце", "gen": "сердца", "ins": "сердцем", "paucal": "сердца", "gen_pl": "сердец", "ins_pl": "сердцами"}),
    "cloud": ("n", {"nom": "облако", "gen": "облака", "ins": "облаком", "paucal": "облака", "gen_pl": "облаков", "ins_pl": "облаками"}),
    "bow_tie": ("f", {"nom": "бабочка", "gen": "бабочки", "ins": "бабочкой", "paucal": "бабочки", "gen_pl": "бабочек", "ins_pl": "бабочками"}),
    "bow_weapon": ("m", {"nom": "лук", "gen": "лука", "ins": "луком", "paucal": "лука", "gen_pl": "луков", "ins_pl": "луками"}),
    "bat_animal": ("f", {"nom": "летучая мышь", "gen": "летучей мыши", "ins": "летучей мышью", "paucal": "летучие мыши", "gen_pl": "летучих мышей", "ins_pl": "летучими мышами"}),
    "bat_club": ("f", {"nom": "бита", "gen": "биты", "ins": "битой", "paucal": "биты", "gen_pl": "бит", "ins_pl": "битами"}),
    "nut_food": ("m", {"nom": "орех", "gen": "ореха", "ins": "орехом", "paucal": "ореха", "gen_pl": "орехов", "ins_pl": "орехами"}),
    "nut_hardware": ("f", {"nom": "гайка", "gen": "гайки", "ins": "гайкой", "paucal": "гайки", "gen_pl": "гаек", "ins_pl": "гайками"}),
    "crane_bird": ("m", {"nom": "журавль", "gen": "журавля", "ins": "журавлём", "paucal": "журавля", "gen_pl": "журавлей", "ins_pl": "журавлями"}),
    "crane_machine": ("m", {"nom": "кран", "gen": "крана", "ins": "краном", "paucal": "крана", "gen_pl": "кранов", "ins_pl": "кранами"}),
}
# Adjective ending sets, keyed by declension type.
ADJECTIVE_ENDINGS = {
    "hard": {"nom_m": "ый", "nom_f": "ая", "nom_n": "ое", "gen_m": "ого", "gen_f": "ой", "ins_m": "ым", "ins_f": "ой", "nom_pl": "ые", "gen_pl": "ых", "ins_pl": "ыми"},
    "soft": {"nom_m": "ий", "nom_f": "яя", "nom_n": "ее", "gen_m": "его", "gen_f": "ей", "ins_m": "им", "ins_f": "ей", "nom_pl": "ие", "gen_pl": "их", "ins_pl": "ими"},
    # Stems in к/г/х take и for ы (spelling rule).
    "velar": {"nom_m": "ий", "nom_f": "ая", "nom_n": "ое", "gen_m": "ого", "gen_f": "ой", "ins_m": "им", "ins_f": "ой", "nom_pl": "ие", "gen_pl": "их", "ins_pl": "ими"},
    # Stressed ending after a sibilant (большой).
    "stressed_sibilant": {"nom_m": "ой", "nom_f": "ая", "nom_n": "ое", "gen_m": "ого", "gen_f": "ой", "ins_m": "им", "ins_f": "ой", "nom_pl": "ие", "gen_pl": "их", "ins_pl": "ими"},
}
ADJECTIVES = {
    "small": ("маленьк", "velar"), "big": ("больш", "stressed_sibilant"),
    "red": ("красн", "hard"), "blue": ("син", "soft"), "green": ("зелён", "hard"),
    "yellow": ("жёлт", "hard"), "black": ("чёрн", "hard"), "white": ("бел", "hard"),
    "brown": ("коричнев", "hard"), "grey": ("сер", "hard"),
}
NUMERALS = {
    2: {"nom_m": "два", "nom_f": "две", "nom_n": "два", "gen": "двух", "ins": "двумя"},
    3: {"nom_m": "три", "nom_f": "три", "nom_n": "три", "gen": "трёх", "ins": "тремя"},
}
# relation -> (preposition, case it governs)
RELATIONS = {
    "left_of": ("слева от", "gen"),
    "right_of": ("справа от", "gen"),
    "above": ("над", "ins"),
    "below": ("под", "ins"),
    "next_to": ("рядом с", "ins"),
}


def adjective(word: str, slot: str) -> str:
    stem, declension = ADJECTIVES[word]
    return stem + ADJECTIVE_ENDINGS[declension][slot]


def _singular_slot(case: str, gender: str) -> str:
    if case == "nom":
        return f"nom_{gender}"
    # Masculine and neuter share their oblique forms.
    return f"{case}_{'f' if gender == 'f' else 'm'}"


def noun_phrase(group: ObjectGroup, case: str) -> str:
    gender, forms = NOUNS[group.shape]
    if group.count == 1:
        slot = _singular_slot(case, gender)
        words = [adjective(group.size, slot), adjective(group.colour, slot), forms[case]]
    elif case == "nom":
        slot = "nom_pl" if gender == "f" else "gen_pl"
        words = [NUMERALS[group.count][f"nom_{gender}"], adjective(group.size, slot), adjective(group.colour, slot), forms["paucal"]]
    else:
        slot = f"{case}_pl"
        words = [NUMERALS[group.count][case], adjective(group.size, slot), adjective(group.colour, slot), forms[slot]]
    return " ".join(words)


def body(scene: Scene, case: str) -> str:
    plan = plan_sentence(scene)
    clause = noun_phrase(plan.figure, case)
    if plan.ground is not None:
        preposition, governed = RELATIONS[plan.relation]
        clause += f" {preposition} {noun_phrase(plan.ground, governed)}"
    return coordinate([clause] + [noun_phrase(g, case) for g in plan.extras], ", ", " и ")


def realise(scene: Scene, family: str) -> str:
    if family == "photo_shows":
        return f"{PHOTO_PREFIX} {body(scene, 'nom')}."
    if family == "there_is":
        return f"Здесь есть {body(scene, 'nom')}."
    if family == "picture_of":
        return f"Изображение {body(scene, 'gen')}."
    if family == "in_picture":
        return f"На картинке {body(scene, 'nom')}."
    raise ValueError(f"unknown template family {family!r}")
