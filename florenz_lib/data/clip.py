"""A small CLIP trained from scratch on the world's train images and English captions.

It stands in for the paper's pretrained ViT-B/16 when aligning text-only translation pairs
to images. Built from an explicit open_clip config (nothing downloaded); the weights are
stored as safetensors and rebuilt from `clip_config.json`, never unpickled.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import pyarrow.compute as pc
import safetensors.torch
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.tokenizer import SimpleTokenizer
from PIL import Image
from tqdm import tqdm

from ..io import decode_png, replacing, write_json
from .io import CAPTION_COLUMNS, CAPTIONS_FILE, IMAGE_COLUMNS, IMAGES_FILE, read_world_table

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "clip_config.json"
TRAIN_LOG_FILE = "train_log.csv"
METRICS_FILE = "metrics.json"

WEIGHT_DECAY = 0.1
WARMUP_FRACTION = 0.05  # a short linear warmup keeps the first steps of a from-scratch ViT stable


@dataclass
class WorldImages:
    keys: list[str]
    pixels: torch.Tensor  # uint8 [N, 3, H, W]


def world_image_size(world_dir: str | os.PathLike) -> int:
    """Side length of the world's square images, read from the first PNG."""
    table = read_world_table(world_dir, IMAGES_FILE, ["png"])
    if table.num_rows == 0:
        raise ValueError(f"{Path(world_dir) / IMAGES_FILE} has no images")
    width, height = decode_png(table.column("png")[0].as_py()).size
    if width != height:
        raise ValueError(f"{Path(world_dir) / IMAGES_FILE}: images must be square, got {width}x{height}")
    return width


def image_to_uint8(image: Image.Image, image_size: int) -> torch.Tensor:
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def normalize_pixels(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float32, scaled to [0, 1] and standardised per channel."""
    mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def make_preprocess(image_size: int, mean, std) -> Callable[[Image.Image], torch.Tensor]:
    def preprocess(image: Image.Image) -> torch.Tensor:
        return normalize_pixels(image_to_uint8(image, image_size), mean, std)

    return preprocess


def clip_architecture(clip_cfg: dict, image_size: int, vocab_size: int) -> dict:
    """The json-serialisable open_clip config that `build_clip` turns into a model."""
    return {
        "embed_dim": int(clip_cfg["embed_dim"]),
        "vision_cfg": {
            "image_size": image_size,
            "patch_size": int(clip_cfg["patch_size"]),
            "width": int(clip_cfg["vision_width"]),
            "layers": int(clip_cfg["vision_layers"]),
            "head_width": int(clip_cfg["vision_width"]) // int(clip_cfg["vision_heads"]),
        },
        "text_cfg": {
            "context_length": int(clip_cfg["context_length"]),
            "vocab_size": vocab_size,
            "width": int(clip_cfg["text_width"]),
            "heads": int(clip_cfg["text_heads"]),
            "layers": int(clip_cfg["text_layers"]),
        },
    }


def build_clip(architecture: dict) -> open_clip.CLIP:
    return open_clip.CLIP(
        architecture["embed_dim"],
        vision_cfg=dict(architecture["vision_cfg"]),
        text_cfg=dict(architecture["text_cfg"]),
    )


def load_world_images(world_dir, split: str, image_size: int) -> WorldImages:
    table = read_world_table(world_dir, IMAGES_FILE, IMAGE_COLUMNS)
    table = table.filter(pc.equal(table.column("split"), split))
    keys = table.column("key").to_pylist()
    pixels = torch.zeros((len(keys), 3, image_size, image_size), dtype=torch.uint8)
    for row, png in enumerate(tqdm(table.column("png").to_pylist(), desc=f"decode {split} images", leave=False)):
        pixels[row] = image_to_uint8(decode_png(png), image_size)
    return WorldImages(keys, pixels)


def english_captions_by_key(world_dir, keys: list[str]) -> dict[str, list[str]]:
    table = read_world_table(world_dir, CAPTIONS_FILE, CAPTION_COLUMNS)
    wanted = set(keys)
    captions: dict[str, list[str]] = {}
    for key, lang, text in zip(*(table.column(c).to_pylist() for c in CAPTION_COLUMNS)):
        if lang == "en" and key in wanted:
            captions.setdefault(key, []).append(text)
    return captions


def cosine_with_warmup(steps: int) -> Callable[[int], float]:
    warmup = max(1, int(steps * WARMUP_FRACTION))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def optimizer_groups(model: torch.nn.Module) -> list[dict]:
    # As in open_clip's trainer: no weight decay on gains, biases, embeddings and the logit scale.
    decayed, exempt = [], []
    for name, param in model.named_parameters():
        no_decay = param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (exempt if no_decay else decayed).append(param)
    return [{"params": decayed, "weight_decay": WEIGHT_DECAY}, {"params": exempt, "weight_decay": 0.0}]


@torch.no_grad()
def retrieval_accuracy(model, tokenizer, images: torch.Tensor, captions: list[str], mean, std) -> dict:
    """Top-1 image->caption and caption->image retrieval, one caption per image.

    A hit is a retrieved item carrying the same caption text: grammar-generated captions can
    repeat across images, and such a retrieval is not an error of the model.
    """
    model.eval()
    image_emb = model.encode_image(normalize_pixels(images, mean, std), normalize=True)
    text_emb = model.encode_text(tokenizer(captions), normalize=True)
    similarity = image_emb @ text_emb.T
    caption_array = np.array(captions, dtype=object)
    image_to_text = caption_array[similarity.argmax(dim=1).numpy()] == caption_array
    text_to_image = caption_array[similarity.argmax(dim=0).numpy()] == caption_array
    return {
        "n": len(captions),
        "image_to_caption_top1": float(image_to_text.mean()),
        "caption_to_image_top1": float(text_to_image.mean()),
        "chance_top1": 1.0 / len(captions),
    }


def train_clip(world_dir, clip_cfg: dict, seed: int, out_dir) -> dict:
    """Train the small CLIP on train images + English captions; write weights, config, log, metrics.

    Returns the metrics dict (also written to out_dir/metrics.json): final loss and top-1
    retrieval accuracy on the held-out images with one English caption each.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_size = world_image_size(world_dir)
    tokenizer = SimpleTokenizer(context_length=int(clip_cfg["context_length"]))
    architecture = clip_architecture(clip_cfg, image_size, tokenizer.vocab_size)
    mean, std = list(OPENAI_DATASET_MEAN), list(OPENAI_DATASET_STD)

    train = load_world_images(world_dir, "train", image_size)
    captions = english_captions_by_key(world_dir, train.keys)
    with_caption = [row for row, key in enumerate(train.keys) if key in captions]
    if not with_caption:
        raise ValueError(f"{Path(world_dir) / CAPTIONS_FILE}: no English captions for train images")
    if len(with_caption) < len(train.keys):
        log.warning("%d train images have no English caption; not used for CLIP", len(train.keys) - len(with_caption))
    pixels = train.pixels[with_caption]
    caption_lists = [captions[train.keys[row]] for row in with_caption]
    caption_offsets = np.cumsum([0] + [len(c) for c in caption_lists])
    caption_tokens = tokenizer([text for texts in caption_lists for text in texts])

    torch.manual_seed(seed)
    model = build_clip(architecture)
    steps, lr = int(clip_cfg["steps"]), float(clip_cfg["lr"])
    batch_size = min(int(clip_cfg["batch_size"]), len(with_caption))
    optimizer = torch.optim.AdamW(optimizer_groups(model), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(steps))
    loss_fn = open_clip.loss.ClipLoss()
    generator = torch.Generator().manual_seed(seed)

    # Batches are drawn without replacement from an epoch permutation of images, so an image
    # never meets itself as a negative; each draw picks one of its English captions.
    order, cursor = torch.randperm(len(with_caption), generator=generator), 0
    log_rows = []
    model.train()
    for step in tqdm(range(steps), desc="train clip", leave=False):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(with_caption), generator=generator), 0
        batch = order[cursor : cursor + batch_size]
        cursor += batch_size
        counts = torch.from_numpy(np.diff(caption_offsets)[batch.numpy()])
        choice = (torch.rand(len(batch), generator=generator) * counts).long()
        text = caption_tokens[torch.from_numpy(caption_offsets[batch.numpy()]) + choice]
        image_features, text_features, logit_scale = model(normalize_pixels(pixels[batch], mean, std), text)
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # as in CLIP: the temperature is clamped at 100
            model.logit_scale.clamp_(0, math.log(100))
        log_rows.append((step, loss.item()))
        if step % 50 == 0 or step == steps - 1:
            log.info("clip step %d/%d loss %.4f", step + 1, steps, log_rows[-1][1])

    heldout = load_world_images(world_dir, "heldout", image_size)
    heldout_captions = english_captions_by_key(world_dir, heldout.keys)
    rows = [row for row, key in enumerate(heldout.keys) if key in heldout_captions]
    retrieval = (
        retrieval_accuracy(model, tokenizer, heldout.pixels[rows], [heldout_captions[heldout.keys[r]][0] for r in rows], mean, std)
        if rows
        else {"n": 0}
    )

    with replacing(out_dir / MODEL_FILE) as temp:
        safetensors.torch.save_model(model, str(temp))
    write_json(
        {
            "architecture": architecture,
            "image_size": image_size,
            "image_mean": mean,
            "image_std": std,
            "tokenizer": "open_clip.tokenizer.SimpleTokenizer",
            "context_length": architecture["text_cfg"]["context_length"],
            "training": {**clip_cfg, "seed": seed, "weight_decay": WEIGHT_DECAY, "warmup_fraction": WARMUP_FRACTION},
        },
        out_dir / CONFIG_FILE,
    )
    with replacing(out_dir / TRAIN_LOG_FILE) as temp, open(temp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss"])
        writer.writerows((step, f"{loss:.6f}") for step, loss in log_rows)
    metrics = {
        "train_images": len(with_caption),
        "train_captions": int(caption_offsets[-1]),
        "steps": steps,
        "batch_size": batch_size,
        "first_loss": log_rows[0][1] if log_rows else None,
        "final_loss": log_rows[-1][1] if log_rows else None,
        "heldout_retrieval": retrieval,
    }
    write_json(metrics, out_dir / METRICS_FILE)
    log.info("clip heldout retrieval: %s", retrieval)
    return metrics


def load_clip(out_dir) -> tuple[open_clip.CLIP, SimpleTokenizer, Callable[[Image.Image], torch.Tensor]]:
    """Rebuild the CLIP written by `train_clip` (eval mode), its tokenizer and its preprocessing.

    preprocess_fn maps a PIL image to a normalised float32 [3, H, W] tensor.
    """
    out_dir = Path(out_dir)
    config_path = out_dir / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"CLIP config is missing: {config_path}")
    weights_path = out_dir / MODEL_FILE
    if not weights_path.is_file():
        raise FileNotFoundError(f"CLIP weights are missing: {weights_path}")
    config = json.loads(config_path.read_text())
    model = build_clip(config["architecture"])
    safetensors.torch.load_model(model, str(weights_path))
    model.eval()
    tokenizer = SimpleTokenizer(context_length=config["context_length"])
    return model, tokenizer, make_preprocess(config["image_size"], config["image_mean"], config["image_std"])
