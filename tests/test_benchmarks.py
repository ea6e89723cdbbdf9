"""The world's downstream benchmarks (CoMMuTE-like, XM3600-like), language identification, prefix
generation, CIDEr, and the prefix table and figure."""
from __future__ import annotations

import difflib
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pycocoevalcap.cider.cider import Cider

from florenz_lib.evaluate.generation import generate_captions, join_prefix, prefix_token_ids, world_prefixes
from florenz_lib.evaluate.prefix import cider_score, evaluate_prefix
from florenz_lib.models.configs import num_image_tokens
from florenz_lib.models.florenz import DECODER_BOS, DECODER_START, save_florenz
from florenz_lib.models.inputs import Example, Seq2SeqCollator
from florenz_lib.models.restructure import florenz_from_florence2
from florenz_lib.models.tokenizers import save_tokenizer, train_decoder_tokenizer
from florenz_lib.paths import Layout
from florenz_lib.report.prefix import PREFIX_COLUMNS, plot_prefix, prefix_results, prefix_table
from florenz_lib.world import LANGS, N_TEMPLATES, describe, language_prefix, render_scene, sample_scene
from florenz_lib.world.benchmarks import (COMMUTE_LANGS, generate_benchmarks, read_xm3600, sibling_meaning,
                                          swap_shape)
from florenz_lib.world.generate import generate_world
from florenz_lib.world.grammar import de, fr, ru, zh
from florenz_lib.world.langid import UNDETERMINED, identify_language, scoring_tokens, segment_zh
from florenz_lib.world.scene import AMBIGUOUS_WORDS, scene_from_json

IMAGE_SIZE = 32
BENCH = {"commute_scenes": 8, "xm3600_images": 6, "multi30k_images": 3, "coco_images": 3}
WORLD = {"image_size": IMAGE_SIZE, "max_objects": 3}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmarks")
    stats = generate_benchmarks(WORLD, BENCH, 0, out)
    return out, stats


def _noun_forms(lang: str, shape: str) -> set[str]:
    """Every form of `shape`'s noun in the grammar of `lang`."""
    entry = {"de": de, "fr": fr, "ru": ru, "zh": zh}[lang].NOUNS[shape]
    if lang == "zh":
        return {entry[0]}
    if lang == "ru":
        return set(entry[1].values())
    return set(entry[1:])


def _lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _png(scene) -> bytes:
    buffer = io.BytesIO()
    render_scene(scene, IMAGE_SIZE).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("lang", COMMUTE_LANGS)
def test_commute_items_pair_one_source_with_both_meanings(bench, lang):
    out, stats = bench
    pair = out / "commute" / f"en-{lang}"
    src, correct = _lines(pair / "src.en"), _lines(pair / f"correct.{lang}")
    incorrect = _lines(pair / f"incorrect.{lang}")
    images, meta = _lines(pair / "img.order"), [json.loads(line) for line in _lines(pair / "meta.jsonl")]
    assert len(src) == len(correct) == len(incorrect) == len(images) == len(meta)
    assert len(src) == stats["commute"]["per_lang"][lang]["items"]
    assert len(src) > 0 and len(set(images)) == len(images)
    for s, c, i, image, m in zip(src, correct, incorrect, images, meta):
        scene = scene_from_json(m["scene"])
        group = scene.groups[m["group"]]
        # the image shows the correct meaning, drawn as that shape
        assert image == m["image"] and group.shape == m["correct_shape"] == image.rsplit("-", 1)[1][:-4]
        assert m["incorrect_shape"] == sibling_meaning(m["correct_shape"])
        assert (out / "commute" / "images" / image).read_bytes() == _png(scene)
        other = swap_shape(scene, m["group"], m["incorrect_shape"])
        # one English sentence for both meanings; translations of the shown and the swapped scene
        assert s == describe(scene, "en", m["variant"]) == describe(other, "en", m["variant"])
        assert c == describe(scene, lang, m["variant"]) and i == describe(other, lang, m["variant"])
        assert c != i
        # they differ only inside the ambiguous noun phrase: one differing span holding the two nouns
        a, b = (list(c), list(i)) if lang == "zh" else (c.split(), i.split())
        blocks = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if op[0] != "equal"]
        first, last = min(op[1] for op in blocks), max(op[2] for op in blocks)
        first_b, last_b = min(op[3] for op in blocks), max(op[4] for op in blocks)
        joiner = "" if lang == "zh" else " "
        span_c, span_i = joiner.join(a[first:last]), joiner.join(b[first_b:last_b])
        assert a[:first] == b[:first_b] and a[last:] == b[last_b:]
        assert any(form in span_c for form in _noun_forms(lang, m["correct_shape"]))
        assert any(form in span_i for form in _noun_forms(lang, m["incorrect_shape"]))
        assert len(span_c.split()) <= 6 and len(span_i.split()) <= 6  # at most a noun phrase (zh: no spaces)
    # CoMMuTE's balance: each source appears once per meaning (a text-only model scores 50%)
    pairs = {}
    for s, m in zip(src, meta):
        pairs.setdefault(m["image"].rsplit("-", 1)[0], []).append((s, m["correct_shape"]))
    for items in pairs.values():
        assert len(items) == 2 and items[0][0] == items[1][0] and items[0][1] == sibling_meaning(items[1][1])


def test_commute_drops_words_whose_translations_coincide(bench):
    out, stats = bench
    assert fr.NOUNS["crane_bird"][1] == fr.NOUNS["crane_machine"][1]  # "grue"
    fr_meta = [json.loads(line) for line in _lines(out / "commute" / "en-fr" / "meta.jsonl")]
    assert fr_meta and "crane" not in {m["word"] for m in fr_meta}
    assert stats["commute"]["per_lang"]["fr"]["dropped_same_translation"] == ["crane"]
    assert stats["commute"]["per_lang"]["de"]["items"] == 2 * BENCH["commute_scenes"]
    assert set(stats["commute"]["words"]) == set(AMBIGUOUS_WORDS) and all(stats["commute"]["words"].values())


def test_xm3600_has_a_reference_per_template_in_every_language(bench, tmp_path):
    out, stats = bench
    records = read_xm3600(out / "xm3600")
    assert len(records) == BENCH["xm3600_images"] == stats["xm3600"]["images"]
    for record in records:
        scene = scene_from_json(record["scene"])
        assert record["png"] == _png(scene)
        assert Image.open(io.BytesIO(record["png"])).size == (IMAGE_SIZE, IMAGE_SIZE)
        for lang in LANGS:
            refs = record[lang]["caption"]
            assert refs == [describe(scene, lang, v) for v in range(N_TEMPLATES)]
            assert len(set(refs)) == N_TEMPLATES
    # new scenes: none of the world's images (same seed, its own stream), and deterministic
    generate_world({**WORLD, "n_train_images": 30, "n_heldout_images": 10, "n_corpus_pairs": 5,
                    "n_heldout_corpus_pairs": 5}, 0, tmp_path / "world")
    world = set(pd.read_parquet(tmp_path / "world" / "images.parquet")["scene"])
    assert not world & {r["scene"] for r in records}
    again = tmp_path / "again"
    generate_benchmarks(WORLD, BENCH, 0, again)
    assert (again / "xm3600" / "captions.jsonl").read_bytes() == (out / "xm3600" / "captions.jsonl").read_bytes()
    zh_pair = ("commute", "en-zh", "correct.zh")
    assert again.joinpath(*zh_pair).read_bytes() == out.joinpath(*zh_pair).read_bytes()


def test_language_id_recognises_every_language_of_the_world():
    rng = np.random.default_rng(123)
    for _ in range(60):
        scene = sample_scene(rng, 4)
        for lang in LANGS:
            for variant in range(N_TEMPLATES):
                text = describe(scene, lang, variant)
                assert identify_language(text) == lang, text
                # a prefix-mode continuation (the prefix stripped) still reads as its language
                if variant == 0:
                    continuation = text[len(language_prefix(lang)):]
                    assert identify_language(continuation) == lang, continuation
    assert identify_language("") == UNDETERMINED and identify_language(" . 12") == UNDETERMINED
    assert identify_language("xyzzy qwerty") == UNDETERMINED


def test_scoring_tokens_follow_the_xm3600_recipe():
    assert scoring_tokens("Sur l'image, on voit une chauve-souris.", "fr") == \
        ["sur", "l", "image", "on", "voit", "une", "chauve", "souris"]
    assert segment_zh("照片上有两个红色的大圆形。") == ["照片", "上", "有", "两", "个", "红色", "的", "大", "圆形", "。"]
    assert scoring_tokens("照片上有两个红色的大圆形。", "zh") == ["照片", "上", "有", "两", "个", "红色", "的", "大", "圆形"]


def test_cider_equals_a_direct_pycocoevalcap_call():
    refs = [["a big red circle", "there is a big red circle", "a picture of a big red circle"],
            ["two small blue stars", "the photo shows two small blue stars", "there are two small blue stars"],
            ["a small green heart", "in the picture there is a small green heart", "a small green heart"]]
    cands = ["a big red circle", "two blue stars", "a big green heart"]
    direct, _ = Cider().compute_score({i: r for i, r in enumerate(refs)}, {i: [c] for i, c in enumerate(cands)})
    assert cider_score(cands, refs, "en") == pytest.approx(direct, abs=1e-12) and direct > 0
    # the same strings with capitals and punctuation score the same after the recipe
    assert cider_score([c.capitalize() + "." for c in cands], refs, "en") == pytest.approx(direct, abs=1e-12)
    zh_refs = [["照片上有一个红色的大圆形。", "这里有一个红色的大圆形。"], ["图中有两颗蓝色的小星星。", "这里有两颗蓝色的小星星。"]]
    zh_cands = ["这里有一个红色的大圆形。", "图中有两颗蓝色的星星。"]
    seg = lambda text: " ".join(scoring_tokens(text, "zh"))  # noqa: E731
    direct_zh, _ = Cider().compute_score({i: [seg(r) for r in rs] for i, rs in enumerate(zh_refs)},
                                         {i: [seg(c)] for i, c in enumerate(zh_cands)})
    assert cider_score(zh_cands, zh_refs, "zh") == pytest.approx(direct_zh, abs=1e-12) and direct_zh > 0


@pytest.fixture(scope="module")
def world_model(base_models, tokenizers):
    """A tiny florence-family model whose decoder tokenizer knows all six world languages, with a
    perturbed decoder so that it emits varied tokens."""
    florence, _ = base_models
    encoder_tok, _ = tokenizers
    rng = np.random.default_rng(7)
    texts = [describe(sample_scene(rng, 3), lang, v) for _ in range(40) for lang in LANGS for v in range(N_TEMPLATES)]
    decoder_tok = train_decoder_tokenizer(texts, 400)
    model = florenz_from_florence2(florence, encoder_tok, decoder_tok).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    collate = Seq2SeqCollator(encoder_tok, decoder_tok,
                              num_image_tokens(model.config.florence2_config().vision_config, IMAGE_SIZE),
                              max_prompt_tokens=24, max_target_tokens=16, decoder_start_id=DECODER_START)
    return model, collate, encoder_tok, decoder_tok


@pytest.mark.parametrize("lang", ["fr", "zh", "ru"])
def test_prefix_generation_continues_the_prefix_and_strips_it(world_model, lang):
    model, collate, _, decoder_tok = world_model
    images = list(torch.randint(0, 256, (3, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8,
                                generator=torch.Generator().manual_seed(3)))
    # the synthetic world seeds its decoder with its grammar's prefixes
    assert world_prefixes("synthetic") == {code: language_prefix(code) for code in LANGS}
    prefix = prefix_token_ids(decoder_tok, world_prefixes("synthetic")[lang])
    assert prefix and DECODER_BOS not in prefix and decoder_tok.decode(prefix) == language_prefix(lang)
    captions = generate_captions(model, collate, decoder_tok, images, lang, prefix=language_prefix(lang),
                                 num_beams=2, max_new_tokens=5, batch_size=2)
    batch = collate([Example(image, "caption", lang, "", "") for image in images])
    start = torch.tensor([[DECODER_START, DECODER_BOS] + prefix] * len(images))
    with torch.no_grad():
        full = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              pixel_values=batch["pixel_values"], decoder_input_ids=start, num_beams=2,
                              max_new_tokens=5, decoder_start_token_id=DECODER_START, bos_token_id=DECODER_BOS,
                              eos_token_id=1, pad_token_id=0, forced_eos_token_id=1)
    assert (full[:, :start.shape[1]] == start).all()
    for caption, row in zip(captions, full.tolist()):
        whole = decoder_tok.decode(row, skip_special_tokens=True)
        # the caption is the text after the prefix, not the prefix again
        assert whole.startswith(language_prefix(lang))
        assert whole.replace(" ", "") == (language_prefix(lang) + caption).replace(" ", "")
        assert caption == decoder_tok.decode(row[start.shape[1]:], skip_special_tokens=True).strip()
        assert not caption.startswith(language_prefix(lang))
    assert join_prefix("照片上", "有一个", "zh") == "照片上有一个"
    assert join_prefix("La photo montre", "un", "fr") == "La photo montre un"
    plain = generate_captions(model, collate, decoder_tok, images, lang, prefix=None, num_beams=2,
                              max_new_tokens=5, batch_size=3)
    assert len(plain) == len(images) and all(isinstance(c, str) for c in plain)


def test_prefix_eval_writes_the_table_and_figure(world_model, bench, tmp_path):
    model, _, encoder_tok, decoder_tok = world_model
    out, _ = bench
    L = Layout(str(tmp_path / "results"))
    save_tokenizer(encoder_tok, L.tokenizers("encoder.json"))
    save_tokenizer(decoder_tok, L.tokenizers("decoder.json"))
    gen = {"langs": ["en", "fr", "zh"], "images_per_lang": 3, "batch_size": 2, "num_beams": 2,
           "max_new_tokens": 4, "cider_includes_prefix": True}
    sizes, budgets = ["tiny-a", "tiny-b"], [1, 2]
    for size in sizes:
        for steps in budgets:
            save_florenz(model, L.run(size, steps))
            result = evaluate_prefix(L.run(size, steps), str(out / "xm3600"), L.tokenizers(), IMAGE_SIZE, 24, 16, gen,
                                     L.run_prefix(size, steps), L.run_name(size, steps), world="synthetic")
    modes = [(lang, m) for lang in gen["langs"] for m in ("no", "yes")]
    assert [(r["lang"], r["prefix"]) for r in result["results"]] == modes
    records = read_xm3600(out / "xm3600")[:3]
    for r in result["results"]:
        assert 0 <= r["target_lang_share"] <= 1 and r["cider"] >= 0 and r["n"] == 3
        assert sum(r["identified"].values()) == 3
        texts = [c["caption"] for c in result["captions"][r["lang"]][r["prefix"]]]
        share = sum(identify_language(t) == r["lang"] for t in texts) / 3
        assert r["target_lang_share"] == share
        # the world's recipe scored it: prefix + continuation in prefix mode (cider_includes_prefix)
        scored = [join_prefix(language_prefix(r["lang"]), t, r["lang"]) if r["prefix"] == "yes" else t for t in texts]
        assert r["cider"] == pytest.approx(cider_score(scored, [x[r["lang"]]["caption"] for x in records], r["lang"]),
                                           abs=1e-12)
    assert result["scoring"]["world"] == "synthetic" and "florenz_lib.world.langid" in result["scoring"]["language_id"]
    assert result["scoring"]["prefixes"] == {lang: language_prefix(lang) for lang in gen["langs"]}
    assert [c["key"] for c in result["captions"]["fr"]["yes"]] == [x["image/key"] for x in records]
    with pytest.raises(ValueError, match="images_per_lang"):
        evaluate_prefix(L.run("tiny-a", 1), str(out / "xm3600"), L.tokenizers(), IMAGE_SIZE, 24, 16,
                        {**gen, "images_per_lang": 99}, str(tmp_path / "x.json"), world="synthetic")

    results = prefix_results(L, sizes, budgets)
    table = prefix_table(results)
    assert tuple(table.columns) == PREFIX_COLUMNS == ("run", "lang", "prefix", "target_lang_share", "cider")
    assert len(table) == len(sizes) * len(budgets) * 3 * 2 and set(table["prefix"]) == {"yes", "no"}
    assert set(table["run"]) == {L.run_name(s, b) for s in sizes for b in budgets}
    plot_prefix(results, tmp_path / "prefix.png")
    assert Image.open(tmp_path / "prefix.png").size[0] > 500
