"""The cc12m world's downstream fine-tuning mix: Multi30K, COCO Karpathy, Image Paragraph and DOCCI
with every task in every language, missing languages filled by NLLB (DESIGN.md sections 1, 2, 5).

Sources (cc12m.finetune; each optional, at least one), read from local copies in their public formats:
  multi30k         {root, images}: Task 1 train, `<root>/data/task1/raw/train.<lang>.gz` (or uncompressed)
                   aligned with `<root>/data/task1/image_splits/train.txt`; the image `<images>/<name>`.
                   train.en is required; every other language of `langs` whose file exists is used as
                   an original (de and fr in the public release; cs is not one of the study's languages).
  coco_karpathy    {annotations, images, splits}: `dataset_coco.json` images[] of `splits` (default
                   train + restval), their sentences[].raw (en), the image `<images>/<filepath>/<filename>`.
  image_paragraph  {paragraphs, split_ids, images}: Stanford `paragraphs_v1.json` ([{image_id, paragraph,
                   url}]) restricted to the ids of `train_split.json`; the image `<images>/<image_id>.jpg`,
                   else the Visual Genome layout `<images>/VG_100K[_2]/<image_id>.jpg` or the authors'
                   `<images>/VG_100K[_2]_<image_id>.jpg` (directory and file name from the url).
  docci            {descriptions, images}: `docci_descriptions.jsonlines` records of split "train"
                   ({example_id, split, image_file, description}); the image `<images>/<image_file>`.

As the authors build theirs (spravil/caption-via-translation, scripts/finetuning_dataset/): every
English text of an image (COCO's five captions, a Multi30K sentence, a paragraph, a description)
is a unit; the image gets, per unit, a caption in every language of `langs` and the image-grounded
translation en->XX for every other language. A language the source has (Multi30K de/fr) keeps its
original text, which then is both the caption and the translation target; a missing one is the
English text translated with NLLB (translate_texts, once per source and language over its distinct
English texts; paragraphs are translated sentence by sentence). COCO images that Multi30K's
test_2017_mscoco split uses are left out when multi30k is configured (the authors meant to, but
their ignore list never matched).

Accounting, per source; both levels reconcile (in = out + sum(dropped)):
  images  records read (for COCO only those of `splits`, for the others those of the train split),
          dropped, checked in this order: multi30k_test_image, duplicate_image (a repeated id; the
          first is kept), empty_text (no non-blank English text), image_missing (no candidate file),
          empty_translation (every unit lost a translation).
  texts   English units of those records, dropped: empty_text (blank), image_dropped (its image was
          dropped for another reason), empty_translation (NLLB returned nothing for one of its languages).
Annotations are counted per task-language key, split into original and machine-translated.

Output: `out_dir/shard-*.parquet` (SHARD_SCHEMA; `png` holds the image file's bytes as stored, JPEG
for all four sources, decoded by the trainer with PIL), rows sorted by key = f"{source}-{id}",
at most shard_size rows each, and `out_dir/stats.json`. One source's texts are held at a time
(sources are processed in key order, so shards stay sorted); image bytes are read per shard.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
from tqdm import tqdm

from ..config import ConfigError
from ..data.shards import SHARD_PATTERN, SHARD_SCHEMA, STATS_FILE
from ..downstream.benchmarks import find_text, multi30k_image_candidates, read_aligned
from ..io import require_file, write_json, write_parquet
from .translate import Translator, load_translator, translate_texts

log = logging.getLogger(__name__)

CONFIG_KEY = "cc12m.finetune"
SOURCE_KEYS = {
    "coco_karpathy": ("annotations", "images"),
    "docci": ("descriptions", "images"),
    "image_paragraph": ("paragraphs", "split_ids", "images"),
    "multi30k": ("root", "images"),
}
DIRECTORY_KEYS = frozenset({"images", "root"})  # every other path key names a file
COCO_DEFAULT_SPLITS = ("train", "restval")
MULTI30K_SPLIT = "train"
MULTI30K_COCO_TEST_SPLIT = "test_2017_mscoco"
DOCCI_SPLIT = "train"


@dataclass
class _Record:
    """One image of a source as read: its id, where its file may be, and its English units
    (per English text: lang -> text, the originals the source has; "en" always present)."""
    id: str
    candidates: list[Path]
    units: list[dict[str, str]]
    drop: str = ""  # a reason the source already knows (multi30k_test_image)


@dataclass
class _Image:
    """A kept image: per unit, lang -> (text, is_original) for every language of the mix."""
    key: str
    path: Path
    units: list[dict[str, tuple[str, bool]]] = field(default_factory=list)


def _path(mix_cfg: dict, source: str, key: str) -> Path:
    """The configured path `source.key`; FileNotFoundError naming the key and the path if it is absent."""
    value = mix_cfg[source].get(key)
    if not value:
        raise ConfigError(f"{CONFIG_KEY}.{source}.{key}: not set")
    path = Path(value)
    if key in DIRECTORY_KEYS and not path.is_dir():
        raise FileNotFoundError(f"{CONFIG_KEY}.{source}.{key}: no such directory {path}")
    if key not in DIRECTORY_KEYS and not path.is_file():
        raise FileNotFoundError(f"{CONFIG_KEY}.{source}.{key}: no such file {path}")
    return path


def _check_config(mix_cfg: dict) -> list[str]:
    """The configured sources in key order, every path checked before any work starts."""
    sources = sorted(name for name, cfg in (mix_cfg or {}).items() if cfg)
    unknown = [name for name in sources if name not in SOURCE_KEYS]
    if unknown:
        raise ConfigError(f"{CONFIG_KEY}: unknown source(s) {unknown}; expected some of {sorted(SOURCE_KEYS)}")
    if not sources:
        raise ConfigError(f"{CONFIG_KEY}: no fine-tuning source configured; set at least one of {sorted(SOURCE_KEYS)}")
    for source in sources:
        for key in SOURCE_KEYS[source]:
            _path(mix_cfg, source, key)
    return sources


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None


def _read_multi30k(cfg: dict, langs: list[str]) -> list[_Record]:
    task = Path(cfg["root"]) / "data" / "task1"
    names_path = require_file(task / "image_splits" / f"{MULTI30K_SPLIT}.txt")
    originals = []
    for lang in langs:
        if lang == "en":
            continue
        try:
            originals.append((lang, find_text(task / "raw" / f"{MULTI30K_SPLIT}.{lang}")))
        except FileNotFoundError:  # a language the release lacks (es, ru, zh) is translated
            pass
    paths = [names_path, find_text(task / "raw" / f"{MULTI30K_SPLIT}.en"), *(path for _, path in originals)]
    log.info("multi30k: originals %s, from %s", [lang for lang, _ in originals], paths[1:])
    names, english, *columns = read_aligned(paths)
    records = []
    for i, name in enumerate(names):
        unit = {"en": english[i], **{lang: column[i] for (lang, _), column in zip(originals, columns)}}
        records.append(_Record(Path(name).stem, multi30k_image_candidates(Path(cfg["images"]), name), [unit]))
    return records


def _multi30k_coco_test_images(multi30k_cfg: dict | None) -> set[str]:
    """COCO file names that Multi30K's test_2017_mscoco split uses (empty without multi30k or the list)."""
    if not multi30k_cfg:
        return set()
    path = Path(multi30k_cfg["root"]) / "data" / "task1" / "image_splits" / f"{MULTI30K_COCO_TEST_SPLIT}.txt"
    if not path.is_file():
        log.warning("%s is missing: COCO images of Multi30K's %s cannot be excluded", path, MULTI30K_COCO_TEST_SPLIT)
        return set()
    # the names carry a caption id: "COCO_val2014_000000000042.jpg#2"
    return {line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def _read_coco_karpathy(cfg: dict, excluded: set[str]) -> list[_Record]:
    path = Path(cfg["annotations"])
    splits = set(cfg.get("splits") or COCO_DEFAULT_SPLITS)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: no images[] list")
    records = []
    for index, image in enumerate(data["images"]):
        try:
            if image["split"] not in splits:
                continue
            units = [{"en": sentence["raw"]} for sentence in image["sentences"]]
            record = _Record(str(image["cocoid"]), [Path(cfg["images"]) / image["filepath"] / image["filename"]], units)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: images[{index}] is malformed ({type(e).__name__}: {e})") from None
        if image["filename"] in excluded:
            record.drop = "multi30k_test_image"
        records.append(record)
    return records


def _paragraph_image_candidates(images: Path, image_id: int, url) -> list[Path]:
    candidates = [images / f"{image_id}.jpg"]
    if isinstance(url, str) and url.count("/") >= 2:
        directory, filename = url.rstrip("/").split("/")[-2:]
        candidates += [images / directory / filename, images / f"{directory}_{filename}"]
    return candidates


def _read_image_paragraph(cfg: dict) -> list[_Record]:
    paragraphs_path, split_path = Path(cfg["paragraphs"]), Path(cfg["split_ids"])
    split_ids = _load_json(split_path)
    if not isinstance(split_ids, list):
        raise ValueError(f"{split_path}: expected a JSON list of image ids")
    split_ids = set(split_ids)
    items = _load_json(paragraphs_path)
    if not isinstance(items, list):
        raise ValueError(f"{paragraphs_path}: expected a JSON list of {{image_id, paragraph, url}}")
    records = []
    for index, item in enumerate(items):
        try:
            image_id, paragraph = item["image_id"], item["paragraph"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{paragraphs_path}[{index}] is malformed ({type(e).__name__}: {e})") from None
        if image_id in split_ids:
            candidates = _paragraph_image_candidates(Path(cfg["images"]), image_id, item.get("url"))
            records.append(_Record(str(image_id), candidates, [{"en": paragraph}]))
    return records


def _read_docci(cfg: dict) -> list[_Record]:
    path = Path(cfg["descriptions"])
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if item["split"] != DOCCI_SPLIT:
                continue
            records.append(_Record(str(item["example_id"]), [Path(cfg["images"]) / item["image_file"]],
                                   [{"en": item["description"]}]))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: not a JSON line ({e.msg})") from None
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}:{number}: malformed record ({type(e).__name__}: {e})") from None
    return records


def _normalise(unit: dict[str, str]) -> dict[str, str]:
    """Whitespace runs (paragraph line breaks, double spaces) become one space; blank texts are left out."""
    cleaned = {lang: " ".join(text.split()) if isinstance(text, str) else "" for lang, text in unit.items()}
    return {lang: text for lang, text in cleaned.items() if text}


def _first_existing(candidates: list[Path]) -> Path | None:
    return next((path for path in candidates if path.is_file()), None)


def _nonzero(counts: Counter) -> dict[str, int]:
    return {reason: n for reason, n in sorted(counts.items()) if n}


def _build_source(source: str, records: list[_Record], langs: list[str],
                  translator: Callable[[], Translator]) -> tuple[list[_Image], dict]:
    """Check, translate and count one source's records; return its kept images (sorted by key) and stats."""
    image_drops, text_drops = Counter(), Counter()
    seen, kept = set(), []
    for record in tqdm(records, desc=f"{source}: check", unit="img", leave=False):
        units = [_normalise(unit) for unit in record.units]
        text_drops["empty_text"] += sum("en" not in unit for unit in units)
        units = [unit for unit in units if "en" in unit]
        reason = record.drop or ("duplicate_image" if record.id in seen else "")
        seen.add(record.id)
        path = None
        if not reason and not units:
            reason = "empty_text"
        if not reason:
            path = _first_existing(record.candidates)
            reason = "" if path is not None else "image_missing"
        if reason:
            image_drops[reason] += 1
            text_drops["image_dropped"] += len(units)
            continue
        kept.append((f"{source}-{record.id}", path, units))

    translated: dict[str, dict[str, str]] = {}
    for lang in langs:
        needed = sorted({unit["en"] for _, _, units in kept for unit in units if lang not in unit})
        if needed:
            log.info("%s: translating %d distinct English texts into %s", source, len(needed), lang)
            translated[lang] = dict(zip(needed, translate_texts(translator(), needed, "en", lang)))

    images, annotations = [], Counter()
    for key, path, units in kept:
        image = _Image(key, path)
        for unit in units:
            full = {lang: (unit[lang], True) if lang in unit else (translated[lang][unit["en"]], False) for lang in langs}
            if not all(text for text, _ in full.values()):
                text_drops["empty_translation"] += 1
                continue
            image.units.append(full)
            for lang, (_, original) in full.items():
                tasks = ("caption",) if lang == "en" else ("caption", "translation")
                annotations.update((f"{task}-{lang}", original) for task in tasks)
        if image.units:
            images.append(image)
        else:
            image_drops["empty_translation"] += 1
    images.sort(key=lambda image: image.key)

    keys = [f"caption-{lang}" for lang in langs] + [f"translation-{lang}" for lang in langs if lang != "en"]
    n_units = sum(len(record.units) for record in records)
    stats = {
        "images": {"in": len(records), "out": len(images), "dropped": _nonzero(image_drops)},
        "texts": {"in": n_units, "out": sum(len(image.units) for image in images), "dropped": _nonzero(text_drops)},
        "annotations": {key: {"count": annotations[key, True] + annotations[key, False], "original": annotations[key, True],
                              "translated": annotations[key, False]} for key in keys},
        "translated_texts": {lang: len(texts) for lang, texts in sorted(translated.items())},
    }
    for level in ("images", "texts"):
        counts = stats[level]
        if counts["in"] != counts["out"] + sum(counts["dropped"].values()):
            raise AssertionError(f"{source} {level} counts do not reconcile: {counts}")
    log.info("%s: %d of %d images kept, dropped %s", source, len(images), len(records), stats["images"]["dropped"])
    return images, stats


def _annotations(image: _Image, langs: list[str]) -> list[dict]:
    """Captions in every language, then the translations en->XX, each over the image's units in order."""
    captions = [{"task": "caption", "lang": lang, "source": "", "target": unit[lang][0]}
                for lang in langs for unit in image.units]
    translations = [{"task": "translation", "lang": lang, "source": unit["en"][0], "target": unit[lang][0]}
                    for lang in langs if lang != "en" for unit in image.units]
    return captions + translations


def write_cc12m_finetune_mix(mix_cfg: dict, translator_cfg: dict, langs: list[str], shard_size: int,
                             out_dir: str | os.PathLike) -> dict:
    """Write the fine-tuning mix of the configured sources as out_dir/shard-*.parquet plus stats.json; return the stats.

    `langs` must include "en" (the source of every translation). The translator (cc12m.translator)
    is loaded only if some language is missing from a source. The mix draws nothing at random.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if "en" not in langs or len(set(langs)) != len(langs):
        raise ValueError(f"langs must be distinct and include 'en' (the source language), got {langs}")
    langs = list(langs)
    sources = _check_config(mix_cfg)
    readers = {
        "coco_karpathy": lambda cfg: _read_coco_karpathy(cfg, _multi30k_coco_test_images(mix_cfg.get("multi30k"))),
        "docci": _read_docci,
        "image_paragraph": _read_image_paragraph,
        "multi30k": lambda cfg: _read_multi30k(cfg, langs),
    }

    loaded: list[Translator] = []

    def translator() -> Translator:
        if not loaded:
            loaded.append(load_translator(translator_cfg))
        return loaded[0]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("shard-*.parquet"):  # a rerun with fewer shards must not leave old ones behind
        stale.unlink()

    per_source: dict[str, dict] = {}

    def rows() -> Iterator[_Image]:
        # Keys start with the source name and sources run in name order, so rows come in key order.
        for source in sources:
            images, per_source[source] = _build_source(source, readers[source](mix_cfg[source]), langs, translator)
            per_source[source]["config"] = json.loads(json.dumps(mix_cfg[source], default=str))
            yield from images
            del images  # hold one source's texts at a time

    shards, buffer = [], []

    def flush() -> None:
        name = SHARD_PATTERN.format(len(shards))
        table = pa.Table.from_pylist([{"key": image.key, "png": image.path.read_bytes(),
                                       "annotations": _annotations(image, langs)} for image in buffer], schema=SHARD_SCHEMA)
        write_parquet(table, out / name)
        shards.append({"file": name, "rows": len(buffer)})
        buffer.clear()

    for image in rows():
        buffer.append(image)
        if len(buffer) == shard_size:
            flush()
    if buffer:
        flush()

    totals = {}
    for stats in per_source.values():
        for key, counts in stats["annotations"].items():
            total = totals.setdefault(key, {"count": 0, "original": 0, "translated": 0})
            for name, value in counts.items():
                total[name] += value
    settings = None  # no language had to be translated: the translator was never loaded
    if loaded:
        t = loaded[0]
        settings = {"model_dir": str(translator_cfg["model_dir"]), "tokenizer_dir": str(translator_cfg["tokenizer_dir"]),
                    "lang_codes": {lang: t.lang_codes[lang] for lang in langs if lang in t.lang_codes},
                    "device": t.device, "compute_type": t.compute_type, "beam_size": t.beam_size,
                    "max_batch_tokens": t.max_batch_tokens, "max_decoding_length": t.max_decoding_length}
    stats = {"langs": langs, "shard_size": shard_size, "sources": per_source, "shards": shards,
             "rows": sum(s["rows"] for s in shards), "annotations": totals, "translator": settings}
    if stats["rows"] != sum(s["images"]["out"] for s in per_source.values()):
        raise AssertionError(f"fine-tuning mix does not reconcile: {stats['rows']} rows, "
                             f"images per source {({k: v['images'] for k, v in per_source.items()})}")
    if not stats["rows"]:
        raise ValueError(f"{CONFIG_KEY}: no image survived, images per source "
                         f"{({k: v['images'] for k, v in per_source.items()})}")
    write_json(stats, out / STATS_FILE)
    log.info("fine-tuning mix: %d rows in %d shards, annotations %s", stats["rows"], len(shards),
             {k: v["count"] for k, v in totals.items()})
    return stats
