"""Tiny fixtures for the cc12m world tests, built in tmp_path (nothing downloaded).

serve_directory / write_cc12m_fixture: a local HTTP image server and a CC12M-like TSV with
the descriptions parquet, including one row for each way a row can be dropped.
build_tiny_open_clip: a registered tiny open_clip architecture with safetensors weights.
build_tiny_m2m100: a tiny NLLB-style translator (HF dir + CTranslate2 conversion) that memorised TINY_NLLB_PAIRS.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import json
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve_directory(directory) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1 (a free port) in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def url_key(url: str) -> str:
    return hashlib.sha1(url.encode("utf-8")).hexdigest()[:16]


@dataclass
class Cc12mFixture:
    tsv: Path
    descriptions: Path
    lines: int  # lines of the TSV
    good_urls: list[str]  # rows that must come out, in TSV order
    descriptions_by_url: dict[str, str]  # the stripped description of every good url
    drops: dict[str, int]  # expected drop counts by reason
    good_sizes: dict[str, tuple[int, int]]  # original (width, height) of every good url


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _picture(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A background colour with a differently coloured rectangle: distinct images per seed."""
    background, foreground = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
    image = Image.new("RGB", (width, height), background)
    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    image.paste(foreground, (x0, y0, x0 + width // 3, y0 + height // 3))
    return image


def write_cc12m_fixture(directory, base_url: str, n_images: int, *, caption_min_chars: int = 3,
                        caption_max_chars: int = 60, large_side: int = 200, seed: int = 0) -> Cc12mFixture:
    """Write images under directory/images, directory/cc12m.tsv and directory/descriptions.parquet.

    Good rows: n_images PNG/JPEG pictures of different sizes (sides 40..99, so they pass a
    100*100 pixel limit) and colours. Bad rows, one each (two unreachable ones): an HTTP 404
    and a refused connection ("download_failed"), random bytes named .jpg ("decode_failed"),
    a large_side x large_side image ("image_too_large" under a limit below large_side**2),
    a url without description ("missing_description"), blank / too short / too long
    descriptions ("empty_caption", "caption_too_short", "caption_too_long"), a repeated
    url ("duplicate_url") and three malformed lines ("malformed_line"). Descriptions carry both
    join columns, url and key (sha1(url) hex[:16]).
    """
    directory = Path(directory)
    images = directory / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    good_urls, good_sizes, descriptions = [], {}, {}
    for i in range(n_images):
        width, height = int(rng.integers(40, 100)), int(rng.integers(40, 100))
        fmt, suffix = ("PNG", "png") if i % 2 == 0 else ("JPEG", "jpg")
        (images / f"img-{i:03d}.{suffix}").write_bytes(_encode(_picture(width, height, rng), fmt))
        url = f"{base_url}/images/img-{i:03d}.{suffix}"
        good_urls.append(url)
        good_sizes[url] = (width, height)
        descriptions[url] = f"  a picture number {i} with a coloured box  "

    def spare_image(name: str, side: int = 48) -> str:
        (images / name).write_bytes(_encode(_picture(side, side, rng), "PNG"))
        return f"{base_url}/images/{name}"

    (images / "corrupt.jpg").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    bad = {
        "download_failed": [f"{base_url}/images/missing.jpg", f"http://127.0.0.1:{closed_port()}/img.jpg"],
        "decode_failed": [f"{base_url}/images/corrupt.jpg"],
        "image_too_large": [spare_image("large.png", large_side)],
        "empty_caption": [spare_image("blank.png")],
        "caption_too_short": [spare_image("short.png")],
        "caption_too_long": [spare_image("long.png")],
        "missing_description": [spare_image("undescribed.png")],
    }
    bad_descriptions = {
        "download_failed": "a picture that cannot be fetched",
        "decode_failed": "a picture that cannot be decoded",
        "image_too_large": "a picture with too many pixels",
        "empty_caption": " \t ",
        "caption_too_short": "x" * (caption_min_chars - 1),
        "caption_too_long": "y" * (caption_max_chars + 1),
    }
    for reason, text in bad_descriptions.items():
        for url in bad[reason]:
            descriptions[url] = text

    rows = [f"{url}\talt text {i}" for i, url in enumerate(good_urls)]
    extra = [f"{url}\talt text of a bad row" for urls in bad.values() for url in urls]
    extra += [f"{good_urls[0]}\tthe same url again", "a line without any tab", "too\tmany\tfields", "\tan empty url"]
    # Bad rows are interleaved with good ones (extra k at line 3k + 1 while good rows last), so
    # both slices of a 2-way scatter hold good and bad rows.
    for position, line in enumerate(extra):
        rows.insert(min(len(rows), 3 * position + 1), line)
    tsv = directory / "cc12m.tsv"
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")

    described = list(descriptions)
    descriptions_path = directory / "descriptions.parquet"
    pq.write_table(pa.table({"url": described, "key": [url_key(u) for u in described],
                             "description": [descriptions[u] for u in described]}), descriptions_path)

    drops = {reason: len(urls) for reason, urls in bad.items()}
    drops["duplicate_url"] = 1
    drops["malformed_line"] = 3
    return Cc12mFixture(tsv=tsv, descriptions=descriptions_path, lines=len(rows), good_urls=good_urls,
                        descriptions_by_url={u: descriptions[u].strip() for u in good_urls}, drops=drops,
                        good_sizes=good_sizes)


TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def build_tiny_open_clip(path) -> tuple[str, Path]:
    """Register a tiny open_clip architecture and save random weights; return (model_name, weights).

    The config is written to path/<name>.json and registered with open_clip.add_model_config,
    so open_clip.create_model(name) and open_clip.get_tokenizer(name) resolve it. The
    vocabulary is the one of open_clip's bundled SimpleTokenizer. Weights: path/tiny_clip.safetensors.
    """
    import open_clip
    import safetensors.torch
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    name = "florenz-tiny-test-clip"
    (path / f"{name}.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(path / f"{name}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(name, pretrained=None)
    weights = path / "tiny_clip.safetensors"
    safetensors.torch.save_model(model, str(weights))
    return name, weights


# --- Tiny NLLB-style translator (M2M100 architecture + NllbTokenizer), for florenz_lib.cc12m.translate ---

TINY_NLLB_LANG_CODES = {"en": "eng_Latn", "de": "deu_Latn", "es": "spa_Latn", "zh": "zho_Hans"}
# English sentences and the translations the tiny model memorises (greedy decoding reproduces them).
TINY_NLLB_PAIRS = {
    "A dog runs on the beach.": {"de": "Ein Hund läuft am Strand.", "es": "Un perro corre en la playa.",
                                 "zh": "一只狗在海滩上奔跑。"},
    "Two red circles.": {"de": "Zwei rote Kreise.", "es": "Dos círculos rojos.", "zh": "两个红色的圆。"},
    "The sky is blue.": {"de": "Der Himmel ist blau.", "es": "El cielo es azul.", "zh": "天空是蓝色的。"},
    "A man holds 3.5 kg of rice.": {"de": "Ein Mann hält 3,5 kg Reis.", "es": "Un hombre sostiene 3,5 kg de arroz.",
                                    "zh": "一个男人拿着3.5公斤大米。"},
}


def build_tiny_m2m100(out_dir) -> tuple[Path, Path]:
    """Build a tiny NLLB-style model that memorised TINY_NLLB_PAIRS; return (ct2_dir, tokenizer_dir).

    tokenizer_dir (out_dir/hf) holds an NllbTokenizer (a BPE vocabulary trained on the pairs,
    the TINY_NLLB_LANG_CODES as special tokens) and the transformers M2M100 model (NLLB's
    architecture, d_model 64, one layer each side) trained for 150 full-batch AdamW steps on
    the pairs; ct2_dir (out_dir/ct2) is its float32 CTranslate2 conversion. A few seconds on
    one CPU thread; deterministic.
    """
    import torch

    from florenz_lib.bench.translation import save_and_convert, tiny_nllb

    codes = TINY_NLLB_LANG_CODES
    texts = [text for en, targets in TINY_NLLB_PAIRS.items() for text in (en, *targets.values())]
    model, tokenizer = tiny_nllb(texts, codes, vocab_size=200, d_model=64, layers=1, max_positions=128)

    sources, targets = [], []
    for en, translations in TINY_NLLB_PAIRS.items():
        for lang, text in translations.items():
            tokenizer.src_lang = codes["en"]
            sources.append(tokenizer(en)["input_ids"])
            tokenizer.src_lang = codes[lang]  # target side: [lang code] tokens </s>, as NLLB's text_target
            targets.append(tokenizer(text)["input_ids"])
    tokenizer.src_lang = codes["en"]
    inputs = tokenizer.pad({"input_ids": sources}, return_tensors="pt")
    labels = torch.full((len(targets), max(map(len, targets))), -100)
    for row, ids in enumerate(targets):
        labels[row, :len(ids)] = torch.tensor(ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_and_convert(model, tokenizer, out_dir)


def write_public_benchmarks(root, langs: list[str], n_images: int = 4, seed: int = 1) -> dict:
    """Tiny copies of XM3600 (captions.jsonl + .jpg images, captions in `langs`) and COCO Karpathy
    (dataset_coco.json with train and test images) in their public layouts, captioned with the tiny NLLB's
    memorised sentences. Returns {"xm3600": {captions, images, langs}, "coco_karpathy": {annotations, images}}."""
    import json

    root = Path(root)
    rng = np.random.default_rng(seed)
    english = list(TINY_NLLB_PAIRS)
    caption = lambda i, lang: english[i % len(english)] if lang == "en" else TINY_NLLB_PAIRS[english[i % len(english)]][lang]  # noqa: E731
    xm3600 = root / "xm3600"
    (xm3600 / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_images):
        key = f"{i:016x}"
        (xm3600 / "images" / f"{key}.jpg").write_bytes(_encode(_picture(48, 40, rng), "JPEG"))
        lines.append(json.dumps({"image/key": key, **{lang: {"caption": [caption(i, lang)]} for lang in langs}},
                                ensure_ascii=False))
    (xm3600 / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    coco = root / "coco"
    (coco / "val2014").mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(2 * n_images):
        name = f"COCO_val2014_{i:012d}.jpg"
        (coco / "val2014" / name).write_bytes(_encode(_picture(48, 40, rng), "JPEG"))
        images.append({"filepath": "val2014", "filename": name, "imgid": i, "cocoid": i, "split": "train" if i % 2 else "test",
                       "sentences": [{"raw": caption(i, "en")}]})
    (coco / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": images}))
    return {"xm3600": {"captions": str(xm3600 / "captions.jsonl"), "images": str(xm3600 / "images"), "langs": langs},
            "coco_karpathy": {"annotations": str(coco / "dataset_coco.json"), "images": str(coco)}}
