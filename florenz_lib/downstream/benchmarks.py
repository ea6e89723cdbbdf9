"""Loaders of the downstream benchmarks from local copies in their public layouts (DESIGN.md section 5).

Every loader takes paths only (which benchmarks are configured is the caller's business) and returns
a small dataclass whose items carry existing image paths:

- Multi30K Task 1 (translation, one reference): `<root>/data/task1/raw/<split>.<lang>.gz` (or the
  same name uncompressed), one sentence per line, aligned with the image names in
  `<root>/data/task1/image_splits/<split>.txt`. test_2017_mscoco names carry a caption id
  (`COCO_val2014_000000000042.jpg#2`); the image is the name before `#`, in the images dir or in
  its COCO subfolder (`train2014/`, `val2014/`).
- Multi30K Task 2 (captioning, five references): `<root>/data/task2/raw/<split>.<N>.<lang>.gz` for
  N in 1..5, aligned with `<root>/data/task2/image_splits/<split>_images.txt` (split `test_2016`).
- COCO Karpathy (captioning): `dataset_coco.json`, images[] of the split, the image at
  `<images_dir>/<filepath>/<filename>`, references sentences[].raw.
- XM3600 (captioning): `captions.jsonl`, one image per line
  ({"image/key": ..., "<lang>": {"caption": [...]}, ...}), the image `<images_dir>/<key>.jpg` or
  `.png` (the synthetic world writes PNG).
- CoMMuTE (ambiguous translation): `<root>/en-XX/{src.en, correct.XX, incorrect.XX, img.order}`,
  one item per line, images (named by img.order) in `<root>/images/`.

A missing file raises FileNotFoundError naming it (a missing image also names the line that lists
it). Malformed content raises ValueError naming the file and the line: aligned files of unequal
length (the line where the shorter one ends), an empty or non-UTF-8 line, a bad JSON line, a line
without the language asked for. COCO Karpathy is one JSON document: a syntax error names its line,
a malformed entry its index in images[].
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import os
from pathlib import Path

from ..io import require_file

MULTI30K_TASK1_SPLITS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")
MULTI30K_TASK2_SPLIT = "test_2016"
MULTI30K_TASK2_REFERENCES = 5
XM3600_IMAGE_EXTENSIONS = (".jpg", ".png")


@dataclasses.dataclass(frozen=True)
class CaptionItem:
    """One image and its reference captions."""
    image_path: Path
    references: list[str]


@dataclasses.dataclass(frozen=True)
class CaptionBenchmark:
    """A captioning benchmark in one language."""
    name: str
    lang: str
    items: list[CaptionItem]


@dataclasses.dataclass(frozen=True)
class TranslationItem:
    """One image, its English source sentence and the reference translations."""
    image_path: Path
    source: str
    references: list[str]


@dataclasses.dataclass(frozen=True)
class TranslationBenchmark:
    """A multimodal translation benchmark from English into one language."""
    name: str
    lang: str
    items: list[TranslationItem]


@dataclasses.dataclass(frozen=True)
class CommuteItem:
    """One CoMMuTE item: the image that settles the ambiguity, the English source, and the correct
    and incorrect translation."""
    image_path: Path
    source: str
    correct: str
    incorrect: str


@dataclasses.dataclass(frozen=True)
class CommuteBenchmark:
    """CoMMuTE for one target language."""
    lang: str
    items: list[CommuteItem]


def find_text(stem: Path) -> Path:
    """`<stem>.gz` (the public form) if present, else the uncompressed `<stem>`."""
    for path in (stem.with_name(stem.name + ".gz"), stem):
        if path.is_file():
            return path
    raise FileNotFoundError(f"required input file is missing: {stem}.gz (nor uncompressed {stem})")


def _read_lines(path: Path) -> list[str]:
    """The stripped lines of a text file (gzip when named .gz); ValueError naming file and line for
    an empty or non-UTF-8 line."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except gzip.BadGzipFile as e:
        raise ValueError(f"{path}: not a gzip file ({e})") from None
    lines = raw.split(b"\n")
    if lines[-1] == b"":  # the newline that ends the last line
        lines.pop()
    texts = []
    for number, line in enumerate(lines, 1):
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{number}: not UTF-8 ({e.reason})") from None
        if not text:
            # an empty line in an aligned file would pair the wrong sentences from here on
            raise ValueError(f"{path}:{number}: empty line")
        texts.append(text)
    return texts


def read_aligned(paths: list[Path]) -> list[list[str]]:
    """The lines of files aligned line by line; ValueError naming the shorter file and the line
    where it ends if their lengths differ."""
    columns = [_read_lines(path) for path in paths]
    for path, lines in zip(paths[1:], columns[1:]):
        if len(lines) != len(columns[0]):
            (short, n_short), (long, n_long) = sorted([(paths[0], len(columns[0])), (path, len(lines))],
                                                      key=lambda pair: pair[1])
            raise ValueError(f"{short}:{n_short + 1}: line missing: the file has {n_short} lines but the "
                             f"aligned {long} has {n_long}")
    return columns


def _image(candidates: list[Path], listed_in: Path, line: int) -> Path:
    """The first existing candidate; FileNotFoundError naming the candidates and the listing line."""
    for path in candidates:
        if path.is_file():
            return path
    tried = " or ".join(str(path) for path in candidates)
    raise FileNotFoundError(f"image is missing: {tried} (listed at {listed_in}:{line})")


def multi30k_image_candidates(images_dir: Path, name: str) -> list[Path]:
    name = name.split("#", 1)[0]  # test_2017_mscoco appends a COCO caption id: "<image>.jpg#<id>"
    candidates = [images_dir / name]
    if name.startswith("COCO_"):
        # COCO's own layout keeps COCO_train2014_*.jpg in train2014/ and COCO_val2014_*.jpg in val2014/
        candidates.append(images_dir / name.split("_")[1] / name)
    return candidates


def load_multi30k_task1(root: str | os.PathLike, split: str, lang: str,
                        images_dir: str | os.PathLike) -> TranslationBenchmark:
    """Multi30K Task 1 `split` (e.g. one of MULTI30K_TASK1_SPLITS): English source, `lang` reference
    (de, fr, cs), the image from `images_dir`."""
    task = Path(root) / "data" / "task1"
    names_path = require_file(task / "image_splits" / f"{split}.txt")
    paths = [names_path, find_text(task / "raw" / f"{split}.en"), find_text(task / "raw" / f"{split}.{lang}")]
    names, sources, targets = read_aligned(paths)
    items = [TranslationItem(_image(multi30k_image_candidates(Path(images_dir), name), names_path, number),
                             source, [target])
             for number, (name, source, target) in enumerate(zip(names, sources, targets), 1)]
    return TranslationBenchmark(f"multi30k-task1-{split}", lang, items)


def load_multi30k_task2(root: str | os.PathLike, split: str, lang: str,
                        images_dir: str | os.PathLike) -> CaptionBenchmark:
    """Multi30K Task 2 `split` (the test split is MULTI30K_TASK2_SPLIT): the five independent `lang`
    captions of each image (en, de)."""
    task = Path(root) / "data" / "task2"
    names_path = require_file(task / "image_splits" / f"{split}_images.txt")
    reference_paths = [find_text(task / "raw" / f"{split}.{n}.{lang}")
                       for n in range(1, MULTI30K_TASK2_REFERENCES + 1)]
    names, *reference_columns = read_aligned([names_path, *reference_paths])
    items = [CaptionItem(_image(multi30k_image_candidates(Path(images_dir), name), names_path, number), list(refs))
             for number, (name, *refs) in enumerate(zip(names, *reference_columns), 1)]
    return CaptionBenchmark(f"multi30k-task2-{split}", lang, items)


def load_coco_karpathy(annotations_path: str | os.PathLike, images_dir: str | os.PathLike,
                       split: str = "test") -> CaptionBenchmark:
    """COCO Karpathy `split` from `dataset_coco.json`: English references of each image."""
    path = require_file(annotations_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: no images[] list")
    items = []
    for index, image in enumerate(data["images"]):
        try:
            if image["split"] != split:
                continue
            references = [sentence["raw"].strip() for sentence in image["sentences"]]
            image_path = Path(images_dir) / image["filepath"] / image["filename"]
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: images[{index}] is malformed ({type(e).__name__}: {e})") from None
        if not references:
            raise ValueError(f"{path}: images[{index}] has no sentences")
        if not image_path.is_file():
            raise FileNotFoundError(f"image is missing: {image_path} (listed at {path}: images[{index}])")
        items.append(CaptionItem(image_path, references))
    if not items:
        raise ValueError(f"{path}: no image of split {split!r}")
    return CaptionBenchmark(f"coco-karpathy-{split}", "en", items)


def load_xm3600(captions_path: str | os.PathLike, images_dir: str | os.PathLike, lang: str) -> CaptionBenchmark:
    """XM3600 in `lang`: every image of `captions.jsonl` with its `lang` captions (blank lines are
    skipped, as JSON Lines readers do)."""
    path = require_file(captions_path)
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: not a JSON line ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("image/key"), str):
            raise ValueError(f"{path}:{number}: no 'image/key'")
        captions = record.get(lang)
        captions = captions.get("caption") if isinstance(captions, dict) else None
        if not captions or not isinstance(captions, list) or not all(isinstance(c, str) and c.strip()
                                                                     for c in captions):
            raise ValueError(f"{path}:{number}: no {lang!r} captions")
        candidates = [Path(images_dir) / f"{record['image/key']}{ext}" for ext in XM3600_IMAGE_EXTENSIONS]
        items.append(CaptionItem(_image(candidates, path, number), [c.strip() for c in captions]))
    if not items:
        raise ValueError(f"{path}: no images")
    return CaptionBenchmark("xm3600", lang, items)


def load_commute(root: str | os.PathLike, lang: str, images_dir: str | os.PathLike | None = None) -> CommuteBenchmark:
    """CoMMuTE en-`lang` under `root`; images from `images_dir`, by default `<root>/images`."""
    pair = Path(root) / f"en-{lang}"
    paths = [require_file(pair / name) for name in ("src.en", f"correct.{lang}", f"incorrect.{lang}", "img.order")]
    sources, correct, incorrect, names = read_aligned(paths)
    images = Path(images_dir) if images_dir is not None else Path(root) / "images"
    items = [CommuteItem(_image([images / name], paths[3], number), source, good, bad)
             for number, (source, good, bad, name) in enumerate(zip(sources, correct, incorrect, names), 1)]
    return CommuteBenchmark(lang, items)
