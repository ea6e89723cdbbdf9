"""CLIP embeddings of world images and of the English side of the translation corpus.

Both are streamed in batches (images are decoded one batch at a time) and stored as
L2-normalised float16 in an npz with `ids` (str [N]) and `emb` (float16 [N, d]).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from .clip import load_clip
from ..io import decode_png, require_columns, write_npz
from .io import CORPUS_FILE, IMAGES_FILE

log = logging.getLogger(__name__)

BATCH_SIZE = 256


def _split_batches(path: Path, id_column: str, value_column: str, split: str) -> Iterator[tuple[list, list]]:
    parquet = require_columns(path, [id_column, "split", value_column])
    for batch in parquet.iter_batches(batch_size=BATCH_SIZE, columns=[id_column, "split", value_column]):
        columns = batch.to_pydict()
        rows = [i for i, s in enumerate(columns["split"]) if s == split]
        if rows:
            yield [columns[id_column][i] for i in rows], [columns[value_column][i] for i in rows]


def finish_embeddings(ids: list[str], chunks: list[np.ndarray], dim: int, what: str, out_npz) -> dict:
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what}: ids are not unique")
    emb = np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float16)
    write_npz(out_npz, ids=np.array(ids, dtype=str), emb=emb)
    log.info("%s: %d embeddings of dim %d -> %s", what, len(ids), dim, out_npz)
    return {"n": len(ids), "dim": dim}


@torch.no_grad()
def normalised_half(features: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(features.float(), dim=-1).numpy().astype(np.float16)


@torch.no_grad()
def embed_images(clip_dir, world_dir, split: str, out_npz) -> dict:
    """Embed the images of `split` from world_dir/images.parquet; ids are image keys."""
    model, _, preprocess = load_clip(clip_dir)
    path = Path(world_dir) / IMAGES_FILE
    ids, chunks = [], []
    for keys, pngs in tqdm(_split_batches(path, "key", "png", split), desc=f"embed {split} images", leave=False):
        pixels = torch.stack([preprocess(decode_png(png)) for png in pngs])
        chunks.append(normalised_half(model.encode_image(pixels)))
        ids.extend(keys)
    return finish_embeddings(ids, chunks, model.text_projection.shape[1], f"{path} [{split}] images", out_npz)


@torch.no_grad()
def embed_sentences(clip_dir, world_dir, split: str, out_npz) -> dict:
    """Embed the English source of the `split` corpus pairs; ids are pair_ids."""
    model, tokenizer, _ = load_clip(clip_dir)
    path = Path(world_dir) / CORPUS_FILE
    ids, chunks = [], []
    for pair_ids, sentences in tqdm(_split_batches(path, "pair_id", "en", split), desc=f"embed {split} sentences", leave=False):
        chunks.append(normalised_half(model.encode_text(tokenizer(sentences))))
        ids.extend(pair_ids)
    return finish_embeddings(ids, chunks, model.text_projection.shape[1], f"{path} [{split}] sentences", out_npz)
