"""CE evaluation and CLIP image embedding: each stage, end to end from its files, against the bare model
forward on the same inputs already in memory (the stage's overhead: reading, decoding, collating,
writing). The thresholded embedding row is the cc12m stage (open_clip ViT, 224 px JPEGs), whose
model load a user pays too; the synthetic world's stage is reported beside it."""
from __future__ import annotations

import io
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import safetensors.torch
import torch
from PIL import Image

from ..cc12m.embed import embed_image_slice, load_open_clip
from ..data.clip import CONFIG_FILE, load_clip, load_world_images, normalize_pixels, train_clip
from ..data.embed import BATCH_SIZE as EMBED_BATCH_SIZE, embed_images
from ..evaluate.ce import SPLITS, evaluate_ce
from ..io import decode_png, read_json, read_parquet, write_parquet
from ..models.florenz import load_florenz
from ..models.inputs import Example, png_to_tensor
from ..train.runs import batch_ce, model_collator
from .core import Row, make_row, paired_seconds
from .fixtures import MAX_PROMPT_TOKENS, MAX_TARGET_TOKENS, BenchData

log = logging.getLogger(__name__)

# The default study's data.clip (config.yaml), trained for a single step: speed does not depend on the weights.
STUDY_CLIP = {"embed_dim": 64, "vision_width": 64, "vision_layers": 2, "vision_heads": 4, "patch_size": 8,
              "text_width": 64, "text_layers": 2, "text_heads": 4, "context_length": 32, "steps": 1,
              "batch_size": 8, "lr": 0.0005}


def bench_ce(data: BenchData, batch_size: int, repeats: int) -> list[Row]:
    """evaluate_ce over the three test splits vs batch_ce of the same rows, pre-collated, on a loaded model."""
    torch.set_num_threads(1)
    model = load_florenz(str(data.model_dir)).eval()
    collate = model_collator(model, str(data.tokenizers_dir), data.image_size, MAX_PROMPT_TOKENS, MAX_TARGET_TOKENS)
    batches, n = [], 0
    for split in SPLITS:
        rows = read_parquet(data.test_dir / f"{split}.parquet", ["png", "task", "lang", "source", "target"]).to_pylist()
        n += len(rows)
        for start in range(0, len(rows), batch_size):
            batches.append(collate([Example(png_to_tensor(r["png"]), r["task"], r["lang"], r["source"], r["target"])
                                    for r in rows[start:start + batch_size]]))

    @torch.no_grad()
    def bare():
        for batch in batches:
            batch_ce(model, batch)

    with tempfile.TemporaryDirectory(prefix="florenz-bench-ce-") as tmp:
        stage_s, bare_s = paired_seconds(
            lambda: evaluate_ce(str(data.model_dir), str(data.test_dir), str(data.tokenizers_dir), data.image_size,
                                batch_size, MAX_PROMPT_TOKENS, MAX_TARGET_TOKENS, str(Path(tmp) / "ce.json"), threads=1),
            bare, repeats)
    log.info("CE: stage %.2fs, bare forward %.2fs for %d samples", stage_s, bare_s, n)
    return [make_row("ce_eval", "CE eval stage vs bare forward", n / stage_s, n / bare_s, "samples/s")]


def build_clip_dir(data: BenchData, out_dir) -> Path:
    train_clip(str(data.world_dir), STUDY_CLIP, 0, str(out_dir))
    return Path(out_dir)


def bench_world_embedding(data: BenchData, clip_dir, repeats: int) -> list[Row]:
    """The synthetic world's embed_images (its own small CLIP) vs encode_image of the same images, decoded
    and normalised beforehand, on the loaded model. Informational: at this model size decoding a PNG
    costs a third of a forward, and the model load is a large share of a few hundred images."""
    torch.set_num_threads(1)
    model, _, _ = load_clip(clip_dir)
    images = load_world_images(str(data.world_dir), "train", data.image_size)
    config = read_json(Path(clip_dir) / CONFIG_FILE)
    pixels = normalize_pixels(images.pixels, config["image_mean"], config["image_std"])
    n = len(images.keys)

    @torch.no_grad()
    def bare():
        for start in range(0, n, EMBED_BATCH_SIZE):
            torch.nn.functional.normalize(model.encode_image(pixels[start:start + EMBED_BATCH_SIZE]), dim=-1)

    with tempfile.TemporaryDirectory(prefix="florenz-bench-embed-") as tmp:
        stage_s, bare_s = paired_seconds(
            lambda: embed_images(str(clip_dir), str(data.world_dir), "train", str(Path(tmp) / "images.npz")), bare,
            repeats)
    log.info("world embedding: stage %.2fs, bare forward %.2fs for %d images", stage_s, bare_s, n)
    return [make_row("embedding", "synthetic world embed_images vs preloaded bare forward", 1000 * stage_s / n,
                     1000 * bare_s / n, "s/1k images")]


# A registered tiny architecture for the test sizes (the real ones are open_clip's bundled configs).
TINY_OPEN_CLIP_NAME = "florenz-bench-tiny-clip"
TINY_OPEN_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                                                  "head_width": 16},
                  "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def _register_tiny_open_clip(directory: Path) -> str:
    import open_clip

    path = directory / f"{TINY_OPEN_CLIP_NAME}.json"
    path.write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(path)
    return TINY_OPEN_CLIP_NAME


def _write_jpeg_slice(path: Path, n: int, side: int, seed: int) -> None:
    """An images/slice parquet of n smooth random side x side JPEGs (as img2dataset stores them)."""
    rng = np.random.default_rng(seed)
    pngs = []
    for _ in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((side, side), Image.BICUBIC)
        buffer = io.BytesIO()
        coarse.save(buffer, format="JPEG", quality=90)
        pngs.append(buffer.getvalue())
    keys = [f"{i:016x}" for i in range(n)]
    write_parquet(pa.table({"key": keys, "split": ["train"] * n, "png": pngs,
                            "url": [f"http://example.invalid/{k}.jpg" for k in keys]}), path)


def bench_cc12m_embedding(work_dir, model_name: str | None, n_images: int, repeats: int) -> list[Row]:
    """embed_image_slice (model load, JPEG decoding, preprocessing, forward, npz) vs what a user would
    otherwise run: load_open_clip and encode_image of the same batch, preprocessed beforehand. The model
    has random weights (speed does not depend on them); model_name None: a tiny registered one."""
    import open_clip

    torch.set_num_threads(1)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    name = model_name or _register_tiny_open_clip(work_dir)
    torch.manual_seed(0)
    weights = work_dir / "clip.safetensors"
    safetensors.torch.save_model(open_clip.create_model(name, pretrained=None), str(weights))
    clip_cfg = {"model": name, "weights": str(weights), "batch_size": n_images, "device": "cpu"}
    side = open_clip.get_model_config(name)["vision_cfg"]["image_size"]
    images = work_dir / "slice-00000.parquet"
    _write_jpeg_slice(images, n_images, side, seed=0)

    _, _, preprocess = load_open_clip(clip_cfg)
    pngs = read_parquet(images, ["png"]).column("png").to_pylist()
    pixels = torch.stack([preprocess(decode_png(png)) for png in pngs])
    forward_times = []

    @torch.no_grad()
    def load_and_forward():
        model, _, _ = load_open_clip(clip_cfg)
        started = time.perf_counter()
        torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
        forward_times.append(time.perf_counter() - started)

    stage_s, theirs_s = paired_seconds(lambda: embed_image_slice(clip_cfg, images, work_dir / "images.npz"),
                                       load_and_forward, repeats)
    forward_s = float(np.median(forward_times[-repeats:]))
    log.info("cc12m embedding (%s): stage %.2fs, load + forward %.2fs, forward %.2fs for %d images", name, stage_s,
             theirs_s, forward_s, n_images)
    per_1k = 1000 / n_images
    return [
        make_row("embedding", f"CLIP embed_image_slice vs load + bare forward ({name}, {n_images} images)",
                 per_1k * stage_s, per_1k * theirs_s, "s/1k images", "<=", 1.10),
        make_row("embedding", f"CLIP embed_image_slice vs preloaded bare forward ({name}, {n_images} images)",
                 per_1k * stage_s, per_1k * forward_s, "s/1k images"),
    ]
