"""CLIP embeddings of the CC12M images and of the English side of the CCMatrix corpus.

The model is an open_clip architecture (cc12m.clip.model, e.g. ViT-B-16) with weights from a
local file (cc12m.clip.weights): safetensors, or a torch checkpoint loaded with
weights_only=True, so nothing in the file is unpickled beyond tensors. Inputs are streamed in
batches of cc12m.clip.batch_size; outputs are npz files with `ids` and L2-normalised float16
`emb`, written as florenz_lib.data.embed writes them.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Iterator

import open_clip
import pyarrow as pa
import pyarrow.compute as pc
import safetensors.torch
import torch
from tqdm import tqdm

from ..data.embed import finish_embeddings, normalised_half
from ..io import decode_png, require_columns

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 256  # cc12m.clip.batch_size when unset


def clip_device(clip_cfg: dict) -> torch.device:
    device = clip_cfg.get("device", "auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def embed_dim(clip_cfg: dict) -> int:
    return int(open_clip.get_model_config(clip_cfg["model"])["embed_dim"])


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            state = safetensors.torch.load_file(str(path))
        else:
            # weights_only: the restricted unpickler admits tensors and plain containers only.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cc12m.clip.weights {path}: cannot be read as weights: {err}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # open_clip training checkpoints wrap the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"cc12m.clip.weights {path}: not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}  # saved from DistributedDataParallel
    return state


def load_open_clip(clip_cfg: dict) -> tuple[torch.nn.Module, Callable, Callable]:
    """Build cc12m.clip.model, load cc12m.clip.weights strictly; return (model, tokenizer, preprocess).

    The model is in eval mode on clip_device(clip_cfg); preprocess is open_clip's inference
    transform (PIL image -> float tensor [3, H, W]); the tokenizer is open_clip's for the
    architecture (SimpleTokenizer with its bundled BPE vocabulary for the OpenAI ViTs).
    """
    name = clip_cfg["model"]
    if clip_cfg.get("model_config"):  # an architecture of one's own: open_clip JSON named <model>.json
        config_path = Path(clip_cfg["model_config"])
        if not config_path.is_file() or config_path.stem != name:
            raise FileNotFoundError(f"cc12m.clip.model_config: no open_clip config file {config_path} named {name}.json")
        open_clip.add_model_config(config_path)
    if name not in open_clip.list_models():
        # Only registered architectures: a name with an hf-hub: schema would be fetched from the hub.
        raise ValueError(f"cc12m.clip.model: {name!r} is not a registered open_clip architecture (open_clip.list_models())")
    path = Path(clip_cfg["weights"])
    if not path.is_file():
        raise FileNotFoundError(f"cc12m.clip.weights: no such file {path}")
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, pretrained_text=False)
    state = _read_weights(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"cc12m.clip.weights {path} does not fit open_clip {name}: {err}") from err
    model.to(clip_device(clip_cfg)).eval()
    log.info("open_clip %s loaded from %s on %s", name, path, clip_device(clip_cfg))
    return model, open_clip.get_tokenizer(name), preprocess


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def _batches(path, columns: list[str], batch_size: int, split: str | None = None) -> Iterator[pa.Table]:
    """Stream `columns` of a parquet file in tables of batch_size rows (the last may be shorter).

    With `split`, only rows whose split column equals it, re-batched so that filtering does
    not shrink the batches.
    """
    parquet = require_columns(path, columns + (["split"] if split else []))
    pending: list[pa.RecordBatch] = []
    n_pending = 0
    for batch in parquet.iter_batches(batch_size=batch_size, columns=columns + (["split"] if split else [])):
        if split:
            batch = batch.filter(pc.equal(batch.column("split"), split))
        pending.append(batch)
        n_pending += batch.num_rows
        while n_pending >= batch_size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, batch_size)
            rest = table.slice(batch_size)
            pending, n_pending = rest.to_batches(), rest.num_rows
    if n_pending:
        yield pa.Table.from_batches(pending)


class _DecodedImageBatches(torch.utils.data.IterableDataset):
    """(keys, preprocessed pixels) per batch of an images parquet, in file order. Under a DataLoader with
    n workers, worker w decodes batches w, w + n, ...; the loader takes them round-robin, so the order
    is the file's while decoding overlaps the forward."""

    def __init__(self, images_parquet, batch_size: int, preprocess: Callable):
        self.images_parquet, self.batch_size, self.preprocess = images_parquet, batch_size, preprocess

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for index, table in enumerate(_batches(self.images_parquet, ["key", "png"], self.batch_size)):
            if index % workers == worker:
                yield (table.column("key").to_pylist(),
                       torch.stack([self.preprocess(decode_png(image)) for image in table.column("png").to_pylist()]))


@torch.no_grad()
def embed_image_slice(clip_cfg: dict, images_parquet, out_npz) -> dict:
    """Embed every image of an images/slice-*.parquet (columns key, png); ids are the keys. JPEG decoding
    and preprocessing run in clip_cfg["workers"] loader processes (default 1; 0: in this process)."""
    model, _, preprocess = load_open_clip(clip_cfg)
    device, batch_size = clip_device(clip_cfg), int(clip_cfg.get("batch_size", DEFAULT_BATCH_SIZE))
    workers = int(clip_cfg.get("workers", 1))
    loader = torch.utils.data.DataLoader(_DecodedImageBatches(images_parquet, batch_size, preprocess), batch_size=None,
                                         num_workers=workers, pin_memory=device.type == "cuda")
    ids, chunks = [], []
    for keys, pixels in tqdm(loader, desc=f"embed {Path(images_parquet).name}", leave=False):
        with _autocast(device):
            features = model.encode_image(pixels.to(device))
        chunks.append(normalised_half(features.float().cpu()))
        ids.extend(keys)
    return finish_embeddings(ids, chunks, embed_dim(clip_cfg), f"{images_parquet} images", out_npz)


@torch.no_grad()
def embed_sentence_chunk(clip_cfg: dict, corpus_chunk_parquet, out_npz, split: str | None = None) -> dict:
    """Embed the English side (column en) of a corpus chunk's pairs, in file order; ids are pair_ids.

    split None (what the alignment stage reads): every pair of the chunk; else only that split's.
    """
    model, tokenizer, _ = load_open_clip(clip_cfg)
    device, batch_size = clip_device(clip_cfg), int(clip_cfg.get("batch_size", DEFAULT_BATCH_SIZE))
    ids, chunks = [], []
    batches = _batches(corpus_chunk_parquet, ["pair_id", "en"], batch_size, split)
    what = f"{corpus_chunk_parquet}" + (f" [{split}]" if split else "")
    for table in tqdm(batches, desc=f"embed {what}", leave=False):
        with _autocast(device):
            features = model.encode_text(tokenizer(table.column("en").to_pylist()).to(device))
        chunks.append(normalised_half(features.float().cpu()))
        ids.extend(table.column("pair_id").to_pylist())
    return finish_embeddings(ids, chunks, embed_dim(clip_cfg), f"{what} sentences", out_npz)
