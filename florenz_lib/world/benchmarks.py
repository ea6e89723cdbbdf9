"""The world's downstream benchmarks, in the public layouts of the real ones (DESIGN.md section 2).

- CoMMuTE-like ambiguity benchmark (`commute/`): scenes with exactly one ambiguous object
  ("bow": bow tie or archery bow). Each scene gives two items, one per meaning, as in CoMMuTE:
  the English source is the same sentence for both (the English word does not tell the meanings
  apart), the image shows one meaning, the correct translation names that meaning and the
  incorrect one names the other (the same scene with only that object's shape swapped, so the
  two translations differ only in that noun phrase). A language whose two translations coincide
  ("grue" is both cranes in French) has no items for that word. Layout:
  `commute/en-XX/{src.en, correct.XX, incorrect.XX, img.order}` (one item per line; img.order
  names a file in `commute/images/`), plus `meta.jsonl` (word, meanings and scene per item).
- XM3600-like multilingual captioning benchmark (`xm3600/`): new held-out-style images with
  references in all six languages, one per template family (N_TEMPLATES references per image
  and language). Layout: `xm3600/captions.jsonl` (one line per image: "image/key", the scene,
  and per language {"caption": [...]}) and `xm3600/images/<key>.png`.

Each draws its scenes from its own seeded stream (the world's images and corpus use streams 0 and 1,
the fine-tuning mix 4), so they are new scenes, never in training, and do not change when the world's sizes do.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import os
from pathlib import Path

import numpy as np

from ..io import write_json
from ..paths import IMAGES_DIR, XM3600_CAPTIONS, XM3600_DIR
from .generate import _png_bytes
from .grammar import LANGS, N_TEMPLATES, describe
from .render import render_scene
from .scene import AMBIGUOUS_WORDS, Scene, sample_scene, scene_to_json

COMMUTE_DIR = "commute"
MULTI30K_DIR = "multi30k"
COCO_DIR = "coco"
MULTI30K_SPLIT = "test_2016_flickr"
MULTI30K_LANGS = ("de", "fr")  # Multi30K Task 1's targets (de, fr, cs) that the world has
STATS_FILE = "stats.json"
COMMUTE_LANGS = ("de", "fr", "ru", "zh")  # the public CoMMuTE's target languages
_XM3600_STREAM = 2
_COMMUTE_STREAM = 3
_MULTI30K_STREAM = 5
_COCO_STREAM = 6
_MEANING_WORD = {shape: word for word, meanings in AMBIGUOUS_WORDS.items() for shape in meanings}


def ambiguous_word(shape: str) -> str | None:
    """The English word of an ambiguous shape ("bow" for "bow_tie"), None for a plain shape."""
    return _MEANING_WORD.get(shape)


def sibling_meaning(shape: str) -> str:
    """The other meaning of an ambiguous shape's English word."""
    first, second = AMBIGUOUS_WORDS[_MEANING_WORD[shape]]
    return second if shape == first else first


def swap_shape(scene: Scene, index: int, shape: str) -> Scene:
    """The scene with group `index` drawn as `shape` (same colour, size, count and positions)."""
    groups = list(scene.groups)
    groups[index] = dataclasses.replace(groups[index], shape=shape)
    return dataclasses.replace(scene, groups=tuple(groups))


def _ambiguous_groups(scene: Scene) -> list[int]:
    return [i for i, g in enumerate(scene.groups) if ambiguous_word(g.shape) is not None]


def commute_scenes(n_scenes: int, max_objects: int, seed: int) -> list[tuple[Scene, int, int]]:
    """n_scenes (scene, ambiguous group index, template variant), the words taken in turn; each scene
    has exactly one ambiguous group."""
    rng = np.random.default_rng([seed, _COMMUTE_STREAM])
    words = list(AMBIGUOUS_WORDS)
    chosen = []
    while len(chosen) < n_scenes:
        scene = sample_scene(rng, max_objects)
        found = _ambiguous_groups(scene)
        if len(found) == 1 and ambiguous_word(scene.groups[found[0]].shape) == words[len(chosen) % len(words)]:
            chosen.append((scene, found[0], int(rng.integers(N_TEMPLATES))))
    return chosen


def commute_items(n_scenes: int, max_objects: int, seed: int) -> list[dict]:
    """Two items per scene (one per meaning), each with its image name, scene, source and the
    correct and incorrect translation per language (None where the two coincide)."""
    items = []
    for number, (scene, index, variant) in enumerate(commute_scenes(n_scenes, max_objects, seed)):
        shape = scene.groups[index].shape
        meanings = {m: swap_shape(scene, index, m) for m in AMBIGUOUS_WORDS[ambiguous_word(shape)]}
        for meaning, shown in meanings.items():
            other = meanings[sibling_meaning(meaning)]
            source = describe(shown, "en", variant)
            assert source == describe(other, "en", variant), "both meanings share the English word"
            translations = {}
            for lang in COMMUTE_LANGS:
                correct, incorrect = describe(shown, lang, variant), describe(other, lang, variant)
                translations[lang] = None if correct == incorrect else (correct, incorrect)
            items.append({"image": f"commute-{number:05d}-{meaning}.png", "scene": shown, "group": index,
                          "word": ambiguous_word(meaning), "correct_shape": meaning,
                          "incorrect_shape": sibling_meaning(meaning), "variant": variant, "source": source,
                          "translations": translations})
    return items


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_commute(out_dir: str | os.PathLike, n_scenes: int, image_size: int, max_objects: int, seed: int) -> dict:
    out = Path(out_dir)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    items = commute_items(n_scenes, max_objects, seed)
    for item in items:
        (out / IMAGES_DIR / item["image"]).write_bytes(_png_bytes(render_scene(item["scene"], image_size)))
    counts = {}
    for lang in COMMUTE_LANGS:
        kept = [item for item in items if item["translations"][lang] is not None]
        pair = out / f"en-{lang}"
        pair.mkdir(parents=True, exist_ok=True)
        _write_lines(pair / "src.en", [item["source"] for item in kept])
        _write_lines(pair / f"correct.{lang}", [item["translations"][lang][0] for item in kept])
        _write_lines(pair / f"incorrect.{lang}", [item["translations"][lang][1] for item in kept])
        _write_lines(pair / "img.order", [item["image"] for item in kept])
        _write_lines(pair / "meta.jsonl", [json.dumps(
            {"image": item["image"], "word": item["word"], "correct_shape": item["correct_shape"],
             "incorrect_shape": item["incorrect_shape"], "group": item["group"], "variant": item["variant"],
             "scene": scene_to_json(item["scene"])}, ensure_ascii=False, sort_keys=True) for item in kept])
        counts[lang] = {"items": len(kept),
                        "dropped_same_translation": sorted({i["word"] for i in items} - {i["word"] for i in kept})}
    return {"scenes": n_scenes, "items": len(items), "images": len(items), "per_lang": counts,
            "words": {word: sum(item["word"] == word for item in items) for word in AMBIGUOUS_WORDS}}


def xm3600_scenes(n_images: int, max_objects: int, seed: int) -> list[Scene]:
    rng = np.random.default_rng([seed, _XM3600_STREAM])
    return [sample_scene(rng, max_objects) for _ in range(n_images)]


def write_xm3600(out_dir: str | os.PathLike, n_images: int, image_size: int, max_objects: int, seed: int) -> dict:
    out = Path(out_dir)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    lines = []
    for number, scene in enumerate(xm3600_scenes(n_images, max_objects, seed)):
        key = f"xm3600-{number:05d}"
        (out / IMAGES_DIR / f"{key}.png").write_bytes(_png_bytes(render_scene(scene, image_size)))
        record = {"image/key": key, "scene": scene_to_json(scene)}
        record.update({lang: {"caption": [describe(scene, lang, v) for v in range(N_TEMPLATES)]} for lang in LANGS})
        lines.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    _write_lines(out / XM3600_CAPTIONS, lines)
    return {"images": n_images, "langs": list(LANGS), "references_per_image": N_TEMPLATES}


def read_xm3600(bench_dir: str | os.PathLike) -> list[dict]:
    """The XM3600-like records in file order, each with its image's PNG bytes under "png"."""
    bench = Path(bench_dir)
    path = bench / XM3600_CAPTIONS
    if not path.is_file():
        raise FileNotFoundError(f"XM3600-like benchmark is missing: {path}")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    for record in records:
        record["png"] = (bench / IMAGES_DIR / f"{record['image/key']}.png").read_bytes()
    return records


def write_multi30k(out_dir: str | os.PathLike, n_images: int, image_size: int, max_objects: int, seed: int) -> dict:
    out = Path(out_dir)
    task = out / "data" / "task1"
    for sub in (out / IMAGES_DIR, task / "raw", task / "image_splits"):
        sub.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, _MULTI30K_STREAM])
    names, texts = [], {lang: [] for lang in ("en", *MULTI30K_LANGS)}
    for number in range(n_images):
        scene, variant = sample_scene(rng, max_objects), int(rng.integers(N_TEMPLATES))
        names.append(f"multi30k-{number:05d}.png")
        (out / IMAGES_DIR / names[-1]).write_bytes(_png_bytes(render_scene(scene, image_size)))
        for lang in texts:
            texts[lang].append(describe(scene, lang, variant))
    _write_lines(task / "image_splits" / f"{MULTI30K_SPLIT}.txt", names)
    for lang, lines in texts.items():
        with gzip.open(task / "raw" / f"{MULTI30K_SPLIT}.{lang}.gz", "wt", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
    return {"images": n_images, "split": MULTI30K_SPLIT, "langs": list(MULTI30K_LANGS)}


def write_coco(out_dir: str | os.PathLike, n_images: int, image_size: int, max_objects: int, seed: int) -> dict:
    out = Path(out_dir)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, _COCO_STREAM])
    images = []
    for number in range(n_images):
        scene = sample_scene(rng, max_objects)
        filename = f"coco-{number:05d}.png"
        (out / IMAGES_DIR / filename).write_bytes(_png_bytes(render_scene(scene, image_size)))
        images.append({"split": "test", "filepath": IMAGES_DIR, "filename": filename, "imgid": number,
                       "sentences": [{"raw": describe(scene, "en", v)} for v in range(N_TEMPLATES)]})
    (out / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": images}, indent=1))
    return {"images": n_images, "references_per_image": N_TEMPLATES}


def generate_benchmarks(world_cfg: dict, bench_cfg: dict, seed: int, out_dir: str | os.PathLike) -> dict:
    """Write commute/, xm3600/, multi30k/, coco/ and stats.json under out_dir; return the stats."""
    out = Path(out_dir)
    size, max_objects = world_cfg["image_size"], world_cfg["max_objects"]
    stats = {
        "commute": write_commute(out / COMMUTE_DIR, bench_cfg["commute_scenes"], size, max_objects, seed),
        "xm3600": write_xm3600(out / XM3600_DIR, bench_cfg["xm3600_images"], size, max_objects, seed),
        "multi30k": write_multi30k(out / MULTI30K_DIR, bench_cfg["multi30k_images"], size, max_objects, seed),
        "coco": write_coco(out / COCO_DIR, bench_cfg["coco_images"], size, max_objects, seed),
        "seed_streams": {"xm3600": [seed, _XM3600_STREAM], "commute": [seed, _COMMUTE_STREAM],
                         "multi30k": [seed, _MULTI30K_STREAM], "coco": [seed, _COCO_STREAM]},
    }
    write_json(stats, out / STATS_FILE)
    return stats
