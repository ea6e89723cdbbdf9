"""The study's constants in the authors' wording (prompts, XM3600 prefixes), and the prefix evaluation
(Figure 4) and downstream XM3600 scoring on the public XM3600 layout as the cc12m world runs them:
.jpg images, the authors' prefixes, langid.py on real text, the XM3600 CIDEr recipe."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import florenz_lib.downstream.evaluate as downstream_evaluate
import florenz_lib.evaluate.prefix as prefix_module
from florenz_lib.downstream.evaluate import evaluate_downstream
from florenz_lib.downstream.metrics import xm3600_cider
from florenz_lib.evaluate.generation import generate_texts, join_prefix, prefix_start, world_prefixes
from florenz_lib.evaluate.prefix import MODES, evaluate_prefix, langid_identify, prefix_world
from florenz_lib.models.florenz import DECODER_START, save_florenz
from florenz_lib.models.inputs import task_prompt
from florenz_lib.models.restructure import florenz_from_florence2
from florenz_lib.models.tokenizers import save_tokenizer, train_decoder_tokenizer
from florenz_lib.study import LANGUAGE_NAMES, STUDY_LANGS, XM3600_PREFIXES
from florenz_lib.world import LANGUAGE_NAMES as WORLD_LANGUAGE_NAMES, language_prefix
from florenz_lib.world.langid import UNDETERMINED, identify_language as world_identify

# Real captions of three pictures (a dog on a beach, children playing football, a red car by a house),
# two references per picture and language.
CAPTIONS = {
    "en": [["A dog runs on the beach.", "A brown dog is running along the sea."],
           ["Two children play football in a park.", "Children are playing with a ball in the park."],
           ["A red car is parked in front of a house.", "A red car stands in front of the house."]],
    "de": [["Ein Hund läuft am Strand.", "Ein brauner Hund rennt am Meer entlang."],
           ["Zwei Kinder spielen Fußball in einem Park.", "Kinder spielen mit einem Ball im Park."],
           ["Ein rotes Auto parkt vor einem Haus.", "Ein rotes Auto steht vor dem Haus."]],
    "fr": [["Un chien court sur la plage.", "Un chien brun court au bord de la mer."],
           ["Deux enfants jouent au football dans un parc.", "Des enfants jouent avec un ballon dans le parc."],
           ["Une voiture rouge est garée devant une maison.", "Une voiture rouge devant la maison."]],
    "es": [["Un perro corre por la playa.", "Un perro marrón corre junto al mar."],
           ["Dos niños juegan al fútbol en un parque.", "Unos niños juegan con una pelota en el parque."],
           ["Un coche rojo está aparcado delante de una casa.", "Un coche rojo frente a la casa."]],
    "ru": [["Собака бежит по пляжу.", "Коричневая собака бежит вдоль моря."],
           ["Двое детей играют в футбол в парке.", "Дети играют с мячом в парке."],
           ["Красная машина припаркована перед домом.", "Красная машина стоит у дома."]],
    "zh": [["一只狗在海滩上奔跑。", "一只棕色的狗沿着海边跑。"],
           ["两个孩子在公园里踢足球。", "孩子们在公园里玩球。"],
           ["一辆红色的汽车停在房子前面。", "房子前面有一辆红色的车。"]],
}
N_IMAGES = 3
IMAGE_SIZE = 32
GEN = {"langs": ["en", "es", "zh"], "images_per_lang": N_IMAGES, "batch_size": 2, "num_beams": 2,
       "max_new_tokens": 4, "cider_includes_prefix": False}


def test_prompts_use_the_authors_language_names():
    assert task_prompt("caption", "zh", "") == "The target language is simplified Chinese. What does the image describe?"
    assert task_prompt("translation", "es", "A dog runs.") == \
        "The target language is Spanish. Translate the following text: A dog runs."
    assert task_prompt("caption", "de", "") == "The target language is German. What does the image describe?"
    assert dict(LANGUAGE_NAMES) == {"en": "English", "de": "German", "fr": "French", "es": "Spanish",
                                    "ru": "Russian", "zh": "simplified Chinese"}
    # the study's names, not the synthetic grammar's
    assert WORLD_LANGUAGE_NAMES["zh"] == "Chinese" and "simplified Chinese" in task_prompt("translation", "zh", "x")
    with pytest.raises(ValueError, match="unknown language"):
        task_prompt("caption", "it", "")


def test_prefixes_are_chosen_by_world():
    assert dict(XM3600_PREFIXES) == {"en": "The image shows", "de": "Das Bild zeigt", "fr": "La photo montre",
                                     "es": "La imagen muestra", "ru": "На картинке изображен", "zh": "图为"}
    assert world_prefixes("cc12m") == dict(XM3600_PREFIXES)
    assert world_prefixes("synthetic") == {lang: language_prefix(lang) for lang in STUDY_LANGS}
    assert world_prefixes("synthetic")["zh"] == "照片上" != world_prefixes("cc12m")["zh"]
    assert join_prefix("图为", "一只狗", "zh") == "图为一只狗" and join_prefix("Das Bild zeigt", "", "de") == "Das Bild zeigt"
    with pytest.raises(ValueError, match="unknown world"):
        world_prefixes("laion")


@pytest.mark.parametrize("lang", STUDY_LANGS)
def test_langid_identifies_real_sentences(lang):
    for pair in CAPTIONS[lang]:
        for sentence in pair:
            assert langid_identify(sentence) == lang, sentence


def test_langid_is_restricted_to_the_study_languages():
    # langid.py alone names these Italian and Portuguese; restricted, it picks a study language
    for text in ("Il gatto dorme sul divano accanto alla finestra.", "O gato dorme no sofá ao lado da janela."):
        assert langid_identify(text) in STUDY_LANGS
    assert langid_identify("") == UNDETERMINED and langid_identify(" 12 . ") == UNDETERMINED
    # the worlds choose their identifier: the world's own one does not know real Spanish
    assert world_identify("Un perro corre por la playa.") == UNDETERMINED
    assert prefix_world("cc12m").identify("Un perro corre por la playa.") == "es"
    assert prefix_world("synthetic").identify is world_identify
    with pytest.raises(ValueError, match="world.name"):
        prefix_world("laion")


@pytest.fixture(scope="module")
def xm3600_public(tmp_path_factory):
    """XM3600 in its public layout: captions.jsonl and images/<key>.jpg (not square: the collator resizes)."""
    root = tmp_path_factory.mktemp("xm3600")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for number in range(N_IMAGES):
        key = f"{number:016x}"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "images" / f"{key}.jpg")
        lines.append(json.dumps({"image/key": key, **{lang: {"caption": CAPTIONS[lang][number]} for lang in CAPTIONS}},
                                ensure_ascii=False))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def real_text_model(tmp_path_factory, base_models, tokenizers):
    """A tiny florence-family model whose decoder tokenizer knows the six languages' real text and the
    authors' prefixes, with a perturbed decoder so that it emits varied tokens; saved with its tokenizers."""
    florence, _ = base_models
    encoder_tok, _ = tokenizers
    texts = [c for pairs in CAPTIONS.values() for pair in pairs for c in pair] + list(XM3600_PREFIXES.values())
    decoder_tok = train_decoder_tokenizer(texts * 3, 300)
    model = florenz_from_florence2(florence, encoder_tok, decoder_tok).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    root = tmp_path_factory.mktemp("real_text_model")
    save_florenz(model, root / "model")
    save_tokenizer(encoder_tok, root / "tok" / "encoder.json")
    save_tokenizer(decoder_tok, root / "tok" / "decoder.json")
    return root / "model", root / "tok", decoder_tok


def test_prefix_eval_on_the_public_layout_in_the_cc12m_world(xm3600_public, real_text_model, tmp_path, monkeypatch):
    model, tok, decoder_tok = real_text_model
    seeded = []
    real_generate = prefix_module.generate_captions

    def spy(*args, prefix, **kwargs):
        seeded.append((args[4], prefix))
        return real_generate(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(prefix_module, "generate_captions", spy)
    out_json = tmp_path / "prefix.json"
    result = evaluate_prefix(str(model), str(xm3600_public), str(tok), IMAGE_SIZE, 24, 16, GEN, str(out_json),
                             "tiny_steps1", world="cc12m")
    written = json.loads(out_json.read_text(encoding="utf-8"))
    assert written["results"] == result["results"]
    assert [(r["lang"], r["prefix"]) for r in written["results"]] == [(lang, m) for lang in GEN["langs"] for m in MODES]
    # the decoder was seeded with the authors' prefixes in prefix mode, with nothing otherwise
    assert seeded == [(lang, XM3600_PREFIXES[lang] if m == "yes" else None) for lang in GEN["langs"] for m in MODES]
    scoring = written["scoring"]
    assert scoring["world"] == "cc12m" and scoring["prefixes"] == {lang: XM3600_PREFIXES[lang] for lang in GEN["langs"]}
    assert scoring["language_id"].startswith("langid.py 1.1.6") and "XM3600 recipe" in scoring["tokenization"]
    assert scoring["candidate"] == "continuation" and scoring["segmenters"] == {"en": "whitespace", "es": "whitespace",
                                                                               "zh": "jieba"}
    for r in written["results"]:
        captions = written["captions"][r["lang"]][r["prefix"]]
        assert [c["key"] for c in captions] == [f"{n:016x}" for n in range(N_IMAGES)] and r["n"] == N_IMAGES
        texts = [c["caption"] for c in captions]
        found = [langid_identify(t) for t in texts]
        assert [c["identified"] for c in captions] == found and sum(r["identified"].values()) == N_IMAGES
        assert r["target_lang_share"] == found.count(r["lang"]) / N_IMAGES
        # CIDEr of the continuation alone, on the XM3600 recipe (cider_includes_prefix false)
        expected, segmenter = xm3600_cider(texts, [pair for pair in CAPTIONS[r["lang"]]], r["lang"])
        assert r["cider"] == pytest.approx(expected, abs=1e-12) and r["segmenter"] == segmenter


def test_prefix_eval_scores_the_prefix_only_when_asked(xm3600_public, real_text_model, tmp_path, monkeypatch):
    """With known generations: in prefix mode the continuation is scored (and identified) alone, unless
    cider_includes_prefix, which scores the authors' prefix + continuation."""
    model, tok, _ = real_text_model
    continuation = {"es": ["un perro corre por la playa", "dos niños juegan al fútbol", "un coche rojo aparcado delante de una casa"],
                    "zh": ["一只狗在海滩上奔跑", "两个孩子在公园里踢足球", "一辆红色的汽车"]}

    def fake(model, collate, decoder_tokenizer, images, lang, prefix, **kwargs):
        assert len(images) == N_IMAGES and tuple(images[0].shape) == (3, 40, 48)  # the .jpg, as read
        # unseeded, the model falls back to English (the paper's failure); seeded, it continues the prefix
        return continuation[lang] if prefix is not None else [pair[0] for pair in CAPTIONS["en"]]

    monkeypatch.setattr(prefix_module, "generate_captions", fake)
    gen = {**GEN, "langs": ["es", "zh"]}
    values = {}
    for includes in (False, True):
        out = evaluate_prefix(str(model), None, str(tok), IMAGE_SIZE, 24, 16, {**gen, "cider_includes_prefix": includes},
                              str(tmp_path / f"prefix_{includes}.json"), world="cc12m",
                              captions_path=str(xm3600_public / "captions.jsonl"),
                              images_dir=str(xm3600_public / "images"))
        for r in out["results"]:
            lang, refs = r["lang"], CAPTIONS[r["lang"]]
            if r["prefix"] == "no":
                assert r["target_lang_share"] == 0 and r["identified"] == {"en": N_IMAGES}
                continue
            assert r["target_lang_share"] == 1 and r["identified"] == {lang: N_IMAGES}
            scored = ([join_prefix(XM3600_PREFIXES[lang], t, lang) for t in continuation[lang]] if includes
                      else continuation[lang])
            assert r["cider"] == pytest.approx(xm3600_cider(scored, refs, lang)[0], abs=1e-12)
            values[lang, includes] = r["cider"]
        assert out["scoring"]["candidate"] == ("prefix + continuation" if includes else "continuation")
    assert all(values[lang, False] != values[lang, True] for lang in gen["langs"])


def test_prefix_eval_stops_on_a_language_without_a_prefix(xm3600_public, real_text_model, tmp_path):
    model, tok, _ = real_text_model
    with pytest.raises(ValueError, match="no decoder prefix for language 'es'"):
        evaluate_prefix(str(model), str(xm3600_public), str(tok), IMAGE_SIZE, 24, 16, GEN, str(tmp_path / "p.json"),
                        world="cc12m", prefixes={"en": "The image shows", "zh": "图为"})
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("includes", [False, True])
def test_downstream_xm3600_uses_the_given_prefixes(xm3600_public, real_text_model, tmp_path, monkeypatch, includes):
    model, tok, decoder_tok = real_text_model
    starts = []

    def spy(model_, collate, tokenizer, examples, start_ids, *args):
        texts = generate_texts(model_, collate, tokenizer, examples, start_ids, *args)
        starts.append((examples[0].lang, start_ids, texts))
        return texts

    monkeypatch.setattr(downstream_evaluate, "generate_texts", spy)
    settings = {"num_beams": 2, "max_new_tokens": 4, "batch_size": 4, "max_items": N_IMAGES,
                "benchmarks": {"xm3600": {"captions": str(xm3600_public / "captions.jsonl"),
                                          "images": str(xm3600_public / "images"), "langs": ["es", "ru"]}}}
    out = evaluate_downstream(str(model), str(tok), IMAGE_SIZE, 24, 16, settings, includes, None,
                              str(tmp_path / "downstream.json"), "tiny_steps1", "pretrained",
                              prefixes=world_prefixes("cc12m"))
    assert out["prefixes"] == dict(XM3600_PREFIXES)
    for lang in ("es", "ru"):
        seeded = [(s, t) for code, s, t in starts if code == lang and s != [DECODER_START]]
        assert [s for s, _ in seeded] == [prefix_start(decoder_tok, XM3600_PREFIXES[lang])]
        continued = seeded[0][1]
        record = next(r for r in out["results"] if r["lang"] == lang and r["metric"] == "cider_prefix")
        scored = [join_prefix(XM3600_PREFIXES[lang], t, lang) for t in continued] if includes else continued
        assert record["prefix"] == XM3600_PREFIXES[lang] and record["samples"] == scored
        assert record["candidate"] == ("prefix + continuation" if includes else "continuation")
        assert record["value"] == pytest.approx(xm3600_cider(scored, CAPTIONS[lang], lang)[0], abs=1e-12)
        assert all(s.startswith(XM3600_PREFIXES[lang]) == includes for s in record["samples"])
