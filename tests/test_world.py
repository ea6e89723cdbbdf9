"""The synthetic world: hand-checked grammar per language, rendering, and the generated files."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from florenz_lib.world import (
    AMBIGUOUS_WORDS,
    LANGS,
    LANGUAGE_NAMES,
    N_TEMPLATES,
    SHAPES,
    ObjectGroup,
    Scene,
    describe,
    generate_world,
    language_prefix,
    render_scene,
    sample_scene,
    scene_from_json,
    scene_to_json,
)
from florenz_lib.world.scene import group_positions

PHOTO_SHOWS, THERE_IS, PICTURE_OF, IN_PICTURE = range(4)


def group(shape, colour, size, count=1, centre=(0.5, 0.5)):
    return ObjectGroup(shape, colour, size, count, group_positions(centre, size, count))


def scene(*groups, relation=None, background="plain"):
    return Scene(background=background, groups=tuple(groups), relation=relation)


# Two small red circles to the left of a big blue square: the running example of the design.
CIRCLES_LEFT_OF_SQUARE = scene(
    group("circle", "red", "small", 2, (0.25, 0.5)), group("square", "blue", "big", 1, (0.7, 0.5)), relation="left_of"
)


# --- English -------------------------------------------------------------------------------

def test_en_there_is_agrees_with_plural_subject():
    assert describe(CIRCLES_LEFT_OF_SQUARE, "en", THERE_IS) == "There are two small red circles to the left of a big blue square."
    assert describe(scene(group("star", "green", "big")), "en", THERE_IS) == "There is a big green star."


def test_en_coordinated_extras_make_a_list():
    s = scene(group("heart", "white", "small"), group("cloud", "grey", "big"), group("bat_club", "brown", "big", 3),
              group("star", "red", "small", 2), relation="above")
    assert describe(s, "en", PICTURE_OF) == (
        "A picture of a small white heart above a big grey cloud, three big brown bats and two small red stars."
    )


# --- German --------------------------------------------------------------------------------

def test_de_dative_after_von():
    assert describe(CIRCLES_LEFT_OF_SQUARE, "de", PHOTO_SHOWS) == (
        "Das Foto zeigt zwei kleine rote Kreise links von einem großen blauen Quadrat."
    )


def test_de_accusative_masculine_after_zeigt():
    assert describe(scene(group("star", "green", "big")), "de", PHOTO_SHOWS) == "Das Foto zeigt einen großen grünen Stern."


def test_de_dative_plural_noun_ending_after_neben():
    s = scene(group("cloud", "yellow", "small"), group("star", "black", "big", 3), relation="next_to")
    assert describe(s, "de", IN_PICTURE) == "Auf dem Bild ist eine kleine gelbe Wolke neben drei großen schwarzen Sternen."


def test_de_weak_dative_herzen_and_plural_verb_for_coordinated_subject():
    s = scene(group("circle", "red", "small"), group("heart", "white", "small"), group("triangle", "grey", "big"), relation="above")
    assert describe(s, "de", IN_PICTURE) == (
        "Auf dem Bild sind ein kleiner roter Kreis über einem kleinen weißen Herzen und ein großes graues Dreieck."
    )


def test_de_dative_feminine_after_bild_von():
    assert describe(scene(group("bat_animal", "brown", "small")), "de", PICTURE_OF) == "Ein Bild von einer kleinen braunen Fledermaus."


# --- French --------------------------------------------------------------------------------

def test_fr_colour_adjective_follows_noun_and_agrees():
    s = scene(group("star", "red", "small", 2), group("circle", "white", "big"), relation="left_of")
    assert describe(s, "fr", PHOTO_SHOWS) == "La photo montre deux petites étoiles rouges à gauche d'un grand cercle blanc."


def test_fr_feminine_colour_form_blanche():
    assert describe(scene(group("bat_animal", "white", "big")), "fr", THERE_IS) == "Il y a une grande chauve-souris blanche."


def test_fr_marron_is_invariable():
    assert describe(scene(group("star", "brown", "small", 3)), "fr", THERE_IS) == "Il y a trois petites étoiles marron."


def test_fr_de_elides_before_article_and_repeats_before_each_conjunct():
    s = scene(group("nut_hardware", "green", "big"), group("star", "blue", "small"), group("cloud", "grey", "big", 2),
              relation="above")
    assert describe(s, "fr", PICTURE_OF) == (
        "Une image d'un grand écrou vert au-dessus d'une petite étoile bleue et de deux grands nuages gris."
    )


# --- Spanish -------------------------------------------------------------------------------

def test_es_plural_agreement():
    assert describe(scene(group("nut_food", "white", "small", 2)), "es", PHOTO_SHOWS) == "La foto muestra dos pequeñas nueces blancas."


def test_es_gran_apocope_before_singular_noun():
    s = scene(group("star", "blue", "big"), group("bat_club", "red", "big"), relation="right_of")
    assert describe(s, "es", THERE_IS) == "Hay una gran estrella azul a la derecha de un gran bate rojo."


def test_es_se_ve_agrees_with_subject_number():
    assert describe(scene(group("heart", "black", "big")), "es", IN_PICTURE) == "En la imagen se ve un gran corazón negro."
    assert describe(scene(group("heart", "black", "big", 2)), "es", IN_PICTURE) == (
        "En la imagen se ven dos grandes corazones negros."
    )


# --- Russian -------------------------------------------------------------------------------

def test_ru_genitive_after_sleva_ot_and_paucal_after_dva():
    assert describe(CIRCLES_LEFT_OF_SQUARE, "ru", PHOTO_SHOWS) == (
        "На фото два маленьких красных круга слева от большого синего квадрата."
    )


def test_ru_feminine_paucal_takes_nominative_plural_adjectives():
    assert describe(scene(group("star", "red", "small", 2)), "ru", PHOTO_SHOWS) == "На фото две маленькие красные звезды."


def test_ru_instrumental_after_nad():
    s = scene(group("triangle", "green", "small"), group("heart", "white", "big", 3), relation="above")
    assert describe(s, "ru", PHOTO_SHOWS) == "На фото маленький зелёный треугольник над тремя большими белыми сердцами."


def test_ru_genitive_after_izobrazhenie_for_every_conjunct():
    s = scene(group("cloud", "yellow", "big"), group("bat_animal", "black", "small"), group("bow_weapon", "grey", "small", 2),
              relation="next_to")
    assert describe(s, "ru", PICTURE_OF) == (
        "Изображение большого жёлтого облака рядом с маленькой чёрной летучей мышью и двух маленьких серых луков."
    )


# --- Chinese -------------------------------------------------------------------------------

def test_zh_measure_word_and_no_spaces():
    text = describe(CIRCLES_LEFT_OF_SQUARE, "zh", PHOTO_SHOWS)
    assert text == "照片上有两个红色的小圆形在一个蓝色的大方块的左边。"
    assert " " not in text


def test_zh_liang_and_noun_specific_measure_words():
    assert describe(scene(group("star", "yellow", "big", 2)), "zh", THERE_IS) == "这里有两颗黄色的大星星。"
    s = scene(group("crane_bird", "white", "small"), group("crane_machine", "grey", "big"), group("nut_food", "brown", "small", 2),
              relation="next_to")
    assert describe(s, "zh", IN_PICTURE) == "图中有一只白色的小鹤在一台灰色的大起重机的旁边，还有两颗棕色的小坚果。"


# --- Across languages ----------------------------------------------------------------------

def test_ambiguous_english_word_has_picture_dependent_translations():
    for word, (first, second) in AMBIGUOUS_WORDS.items():
        a, b = scene(group(first, "red", "big")), scene(group(second, "red", "big"))
        assert describe(a, "en", 0) == describe(b, "en", 0) == f"The photo shows a big red {word}."
        for lang in ("de", "es", "ru", "zh"):
            assert describe(a, lang, 0) != describe(b, lang, 0), (word, lang)
    # French, like real French, says "grue" for both cranes; the other words differ.
    assert describe(scene(group("bow_tie", "red", "big")), "fr", 0) != describe(scene(group("bow_weapon", "red", "big")), "fr", 0)


def test_variant_selects_same_template_family_in_every_language():
    for lang in LANGS:
        texts = [describe(CIRCLES_LEFT_OF_SQUARE, lang, v) for v in range(N_TEMPLATES)]
        assert len(set(texts)) == N_TEMPLATES, lang
        assert describe(CIRCLES_LEFT_OF_SQUARE, lang, N_TEMPLATES + 1) == texts[1]


def test_language_prefix_starts_the_photo_template():
    assert language_prefix("fr") == "La photo montre"
    assert language_prefix("zh") == "照片上"
    for lang in LANGS:
        text = describe(CIRCLES_LEFT_OF_SQUARE, lang, PHOTO_SHOWS)
        separator = "" if lang == "zh" else " "
        assert text.startswith(language_prefix(lang) + separator), lang
    assert LANGUAGE_NAMES["de"] == "German" and set(LANGUAGE_NAMES) == set(LANGS)


def test_unknown_language_is_rejected():
    with pytest.raises(ValueError, match="xx"):
        describe(CIRCLES_LEFT_OF_SQUARE, "xx", 0)


def test_random_scenes_describe_in_all_languages():
    rng = np.random.default_rng(3)
    for _ in range(200):
        s = sample_scene(rng, 4)
        for lang in LANGS:
            text = describe(s, lang, int(rng.integers(N_TEMPLATES)))
            assert text.endswith("。" if lang == "zh" else ".") and "  " not in text


# --- Scenes and rendering ------------------------------------------------------------------

def test_scene_json_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = sample_scene(rng, 3)
        assert scene_from_json(scene_to_json(s)) == s


def test_sampled_positions_satisfy_the_relation():
    rng = np.random.default_rng(1)
    for _ in range(300):
        s = sample_scene(rng, 3)
        assert (s.relation is None) == (len(s.groups) == 1)
        if s.relation is None:
            continue
        (fx, fy), (gx, gy) = (np.mean(g.positions, axis=0) for g in s.groups[:2])
        dx, dy = fx - gx, fy - gy
        horizontal = abs(dx) > abs(dy)
        expected = {"left_of": horizontal and dx < 0, "right_of": horizontal and dx > 0, "above": not horizontal and dy < 0,
                    "below": not horizontal and dy > 0, "next_to": horizontal}
        assert expected[s.relation], (s.relation, dx, dy)
        for g in s.groups:
            assert all(0 < x < 1 and 0 < y < 1 for x, y in g.positions)


def test_render_is_deterministic_rgb_of_requested_size():
    s = sample_scene(np.random.default_rng(2), 3)
    image = render_scene(s, 48)
    assert image.mode == "RGB" and image.size == (48, 48)
    assert np.array_equal(np.asarray(image), np.asarray(render_scene(s, 48)))


def test_different_shapes_render_differently():
    arrays = {shape: np.asarray(render_scene(scene(group(shape, "red", "big")), 64), dtype=np.int16) for shape in SHAPES}
    for i, a in enumerate(SHAPES):
        for b in SHAPES[i + 1:]:
            assert np.abs(arrays[a] - arrays[b]).mean() > 1.0, (a, b)


def test_size_is_visible():
    background = np.asarray(render_scene(scene(), 64), dtype=np.int16)

    def covered(size):
        image = np.asarray(render_scene(scene(group("square", "blue", size)), 64), dtype=np.int16)
        return (np.abs(image - background).sum(axis=2) > 30).sum()

    assert covered("big") > 2 * covered("small")


# --- Generation ----------------------------------------------------------------------------

SMALL_WORLD = {"name": "synthetic", "image_size": 32, "max_objects": 3, "n_train_images": 12, "n_heldout_images": 5,
               "n_corpus_pairs": 4, "n_heldout_corpus_pairs": 2}
WORLD_FILES = ("images.parquet", "captions.parquet", "corpus.parquet", "world_stats.json")


def test_generate_world_is_byte_deterministic(tmp_path):
    generate_world(SMALL_WORLD, 7, tmp_path / "a")
    generate_world(SMALL_WORLD, 7, tmp_path / "b")
    generate_world(SMALL_WORLD, 8, tmp_path / "c")
    for name in WORLD_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "images.parquet").read_bytes() != (tmp_path / "c" / "images.parquet").read_bytes()


def test_generate_world_counts_match_config(tmp_path):
    stats = generate_world(SMALL_WORLD, 0, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(WORLD_FILES)  # no .tmp left behind
    assert json.loads((tmp_path / "world_stats.json").read_text()) == stats

    images = pq.read_table(tmp_path / "images.parquet").to_pandas()
    assert images.columns.tolist() == ["key", "split", "png", "scene"]
    assert (images.split == "train").sum() == 12 and (images.split == "heldout").sum() == 5
    assert images.key.is_unique
    assert Image.open(io.BytesIO(images.png[0])).size == (32, 32)
    scene_from_json(images.scene[0])

    captions = pq.read_table(tmp_path / "captions.parquet").to_pandas()
    split_of = dict(zip(images.key, images.split))
    langs = captions.groupby(captions.key.map(split_of)).lang.agg(lambda s: sorted(set(s)))
    assert langs["train"] == ["de", "en"] and langs["heldout"] == sorted(LANGS)
    assert len(captions) == 12 * 2 + 5 * 6

    corpus = pq.read_table(tmp_path / "corpus.parquet").to_pandas()
    assert corpus.columns.tolist() == ["pair_id", "split", "lang", "en", "text", "scene"]
    counts = corpus.groupby(["split", "lang"]).size()
    for lang in ("de", "fr", "es", "ru", "zh"):
        assert counts[("train", lang)] == 4 and counts[("heldout", lang)] == 2
    assert corpus.pair_id.is_unique
    assert stats["corpus"]["train"]["zh"] == 4 and stats["images"] == {"heldout": 5, "train": 12}


def test_caption_languages_of_one_image_share_the_variant(tmp_path):
    generate_world(SMALL_WORLD, 0, tmp_path)
    images = pq.read_table(tmp_path / "images.parquet").to_pandas()
    captions = pq.read_table(tmp_path / "captions.parquet").to_pandas()
    key = images.key[images.split == "heldout"].iloc[0]
    s = scene_from_json(images.scene[images.key == key].iloc[0])
    texts = dict(zip(captions.lang[captions.key == key], captions.text[captions.key == key]))
    variant = next(v for v in range(N_TEMPLATES) if describe(s, "en", v) == texts["en"])
    assert all(texts[lang] == describe(s, lang, variant) for lang in LANGS)


@pytest.mark.parametrize("key,value", [("image_size", 8), ("max_objects", 0), ("n_train_images", -1), ("max_objects", 9)])
def test_invalid_config_names_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=key):
        generate_world({**SMALL_WORLD, key: value}, 0, tmp_path)
