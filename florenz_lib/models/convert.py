"""Bring published base checkpoints into the layout this pipeline loads.

Florence-2 is published by Microsoft in the *remote-code layout* (config.json with `auto_map` to the hub's
configuration_florence2 / modeling_florence2, a `florence2_language` text config, a `davit` vision config,
weights named `language_model.model.*`, `vision_tower.convs.*.proj`, `image_projection`, ...). The
pipeline never runs remote code: it loads transformers' own `Florence2ForConditionalGeneration` (the
*native layout*). `convert_florence2` renames every published tensor to its native name with
transformers' checkpoint-conversion renamings (`WeightRenaming`), transposes `image_projection` (the remote
model computes `x @ image_projection` with a [vision_dim, projection_dim] parameter; the native projector is
an `nn.Linear`, whose weight is [projection_dim, vision_dim]), checks that every tensor found a slot and
every slot a tensor, keeps the stored dtype and writes config.json + model.safetensors with
`save_pretrained`. The renaming rules follow the published names as read in transformers'
models/florence2/convert_florence2_original_pytorch_to_hf.py and the hub's modeling_florence2.py.

Gemma-2 is already published in the layout transformers loads, so `import_gemma2` only checks a checkpoint
directory and exposes it as a directory of symlinks (no copy of 5-18 GB).

Both write their output directory atomically: into a temporary directory beside it, renamed into place
when complete, so a killed job never leaves a half-written output. Pickled weights (pytorch_model.bin)
are refused rather than unpickled.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import BartConfig, Florence2Config, Florence2ForConditionalGeneration, Florence2VisionConfig
from transformers.core_model_loading import WeightRenaming, apply_renamings

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json")
GEMMA2_OPTIONAL_FILES = ("generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
                         "tokenizer.model", "added_tokens.json")
SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
PICKLED = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be converted or imported as it is."""


# ---------------------------------------------------------------------------------------------------------
# Remote -> native weight names. Applied in order, each rule to the result of the previous ones.

REMOTE_TO_NATIVE = [
    # Language model: Florence2LanguageForConditionalGeneration -> BartModel inside Florence2Model.
    WeightRenaming(r"^language_model\.model\.", "model.language_model."),
    WeightRenaming(r"^language_model\.lm_head\.", "lm_head."),
    # DaViT: the remote blocks wrap every layer in PreNorm(norm, fn) and the convolutions in DepthWiseConv2d.dw.
    WeightRenaming(r"^vision_tower\.", "model.vision_tower."),
    WeightRenaming(r"(convs\.\d+)\.proj\.", r"\1.conv."),
    WeightRenaming(r"\.conv1\.fn\.dw\.", ".conv1."),
    WeightRenaming(r"\.conv2\.fn\.dw\.", ".conv2."),
    WeightRenaming(r"spatial_block\.window_attn\.norm\.", "spatial_block.norm1."),
    WeightRenaming(r"channel_block\.channel_attn\.norm\.", "channel_block.norm1."),
    WeightRenaming(r"\.window_attn\.fn\.", ".window_attn."),
    WeightRenaming(r"\.channel_attn\.fn\.", ".channel_attn."),
    WeightRenaming(r"\.ffn\.norm\.", ".norm2."),
    WeightRenaming(r"\.ffn\.fn\.net\.", ".ffn."),
    # Projector: top-level parameters of the remote model -> Florence2MultiModalProjector.
    WeightRenaming(r"^image_projection", "model.multi_modal_projector.image_projection.weight"),
    WeightRenaming(r"^image_proj_norm\.", "model.multi_modal_projector.image_proj_norm."),
    WeightRenaming(r"^image_pos_embed\.", "model.multi_modal_projector.image_position_embed."),
    WeightRenaming(r"^visual_temporal_embed\.", "model.multi_modal_projector.visual_temporal_embed."),
]
NATIVE_TO_REMOTE = [rule.reverse_transform() for rule in reversed(REMOTE_TO_NATIVE)]  # names in errors
TRANSPOSED = {"model.multi_modal_projector.image_projection.weight"}  # [dim, proj] parameter -> Linear weight

# Tied embeddings: the first name holds the tensor, the others must be absent or equal to it.
REMOTE_TIED = ("language_model.model.shared.weight", "language_model.model.encoder.embed_tokens.weight",
               "language_model.model.decoder.embed_tokens.weight", "language_model.lm_head.weight")
NATIVE_TIED = ("model.language_model.shared.weight", "model.language_model.encoder.embed_tokens.weight",
               "model.language_model.decoder.embed_tokens.weight", "lm_head.weight")
REMOTE_LOGITS_BIAS = "language_model.final_logits_bias"  # BART's zero buffer; the native model has none

# Remote text-config keys that BartConfig takes over; the rest are generation defaults or keys the remote
# code never reads (add_bias_logits, normalize_before, ...).
BART_KEYS = ("vocab_size", "max_position_embeddings", "d_model", "encoder_layers", "decoder_layers",
             "encoder_ffn_dim", "decoder_ffn_dim", "encoder_attention_heads", "decoder_attention_heads",
             "encoder_layerdrop", "decoder_layerdrop", "activation_function", "dropout", "attention_dropout",
             "activation_dropout", "init_std", "classifier_dropout", "scale_embedding", "use_cache",
             "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "forced_eos_token_id",
             "is_encoder_decoder")
# Keys a remote config must state: where they are missing the remote code's defaults differ from the native
# ones (dim_embed, num_heads, vocab_size, ...), and heads or widths that are wrong do not show in the shapes.
REQUIRED_TEXT_KEYS = ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_ffn_dim",
                      "decoder_ffn_dim", "encoder_attention_heads", "decoder_attention_heads")
DAVIT_KEYS = ("depths", "num_heads", "num_groups", "patch_size", "patch_stride", "patch_padding",
              "patch_prenorm", "window_size", "projection_dim", "drop_path_rate")
NATIVE_FEATURE_SOURCE = ["spatial_avg_pool", "temporal_avg_pool"]  # what the native projector computes


# ---------------------------------------------------------------------------------------------------------
# Reading checkpoint directories.

def _read_config(src: Path) -> dict:
    path = src / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint directory needs its config.json")
    return json.loads(path.read_text())


def weight_files(src: Path) -> list[Path]:
    """The safetensors files holding the checkpoint: model.safetensors, or the shards its index names."""
    index = src / SAFETENSORS_INDEX
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [name for name in shards if not (src / name).is_file()]
        if missing:
            raise CheckpointError(f"{index}: names shard(s) that are missing: {', '.join(missing)}")
        return [src / name for name in shards]
    if (src / SAFETENSORS).is_file():
        return [src / SAFETENSORS]
    for name in PICKLED:
        if (src / name).is_file():
            raise CheckpointError(f"{src / name}: pickled weights are not loaded here; convert it to "
                                  f"safetensors first ({SAFETENSORS} or {SAFETENSORS_INDEX} + shards)")
    raise CheckpointError(f"{src}: no {SAFETENSORS} or {SAFETENSORS_INDEX}")


def _check_index_covers(src: Path, names: set[str]) -> None:
    index = src / SAFETENSORS_INDEX
    if not index.is_file():
        return
    listed = set(json.loads(index.read_text())["weight_map"])
    if listed != names:
        raise CheckpointError(f"{index}: weight_map and shards disagree; only in the index: "
                              f"{sorted(listed - names)}, only in the shards: {sorted(names - listed)}")


def _load_tensors(src: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in weight_files(src):
        part = load_file(path)
        twice = sorted(set(part) & set(tensors))
        if twice:
            raise CheckpointError(f"{path}: tensor(s) also stored in another shard: {twice}")
        tensors.update(part)
    _check_index_covers(src, set(tensors))
    return tensors


def _dtype_name(dtypes: set) -> str:
    """"bfloat16" for one dtype (torch or safetensors spelling), "mixed:..." for several."""
    names = sorted(SAFETENSORS_DTYPES.get(str(d), str(d).removeprefix("torch.")) for d in dtypes)
    return names[0] if len(names) == 1 else "mixed:" + ",".join(names)


# ---------------------------------------------------------------------------------------------------------
# Writing a directory atomically.

@contextlib.contextmanager
def _replacing_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside `out_dir`; on success it replaces `out_dir`.

    On failure the temporary directory is removed and `out_dir` is left as it was."""
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():  # swap: move the old one aside, the new one in, then drop the old one
            old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old)
        else:
            os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _distinct(src_dir, out_dir) -> tuple[Path, Path]:
    src, out = Path(src_dir), Path(out_dir)
    if out.resolve() == src.resolve():
        raise CheckpointError(f"{out}: the output directory must differ from the source directory")
    return src, out


# ---------------------------------------------------------------------------------------------------------
# Florence-2.

def _layout_of(config: dict) -> str | None:
    if config.get("model_type") != "florence2":
        return None
    vision = config.get("vision_config") or {}
    text = config.get("text_config") or {}
    if vision.get("model_type") == "florence_vision" and text.get("model_type") == "bart" \
            and "auto_map" not in config:
        return "native"
    if vision.get("model_type") == "davit" and text.get("model_type", "florence2_language") == "florence2_language":
        return "remote"
    return None


def detect_florence2_layout(src_dir: str | os.PathLike) -> str:
    """"remote" (Microsoft's hub layout, for trust_remote_code) or "native" (transformers' Florence-2)."""
    path = Path(src_dir) / "config.json"
    layout = _layout_of(_read_config(Path(src_dir)))
    if layout is None:
        raise CheckpointError(
            f"{path}: neither a remote-code Florence-2 config (model_type florence2, vision_config model_type "
            f"davit, text_config florence2_language) nor a native one (vision florence_vision, text bart)")
    return layout


def _native_config(remote: dict, path: Path) -> Florence2Config:
    """The native Florence2Config equivalent to a remote-code config.json."""
    vision, text = remote["vision_config"], remote["text_config"]
    absent = [f"text_config.{k}" for k in REQUIRED_TEXT_KEYS if k not in text]
    absent += [f"vision_config.{k}" for k in ("dim_embed", *DAVIT_KEYS) if k not in vision]
    if absent:
        raise CheckpointError(f"{path}: lacks {', '.join(absent)}")
    pos, temporal = vision.get("image_pos_embed") or {}, vision.get("visual_temporal_embedding") or {}
    if pos.get("type") != "learned_abs_2d" or temporal.get("type") != "COSINE":
        raise CheckpointError(f"{path}: the native model has only learned_abs_2d image position and COSINE "
                              f"temporal embeddings, this config has {pos.get('type')!r}, {temporal.get('type')!r}")
    if list(vision.get("image_feature_source", NATIVE_FEATURE_SOURCE)) != NATIVE_FEATURE_SOURCE:
        raise CheckpointError(f"{path}: image_feature_source {vision['image_feature_source']} is not the native "
                              f"model's {NATIVE_FEATURE_SOURCE}")
    bart = BartConfig(**{k: text[k] for k in BART_KEYS if k in text})
    davit = Florence2VisionConfig(embed_dim=list(vision["dim_embed"]),
                                  max_position_embeddings=pos["max_pos_embeddings"],
                                  max_temporal_embeddings=temporal["max_temporal_embeddings"],
                                  **{k: vision[k] for k in DAVIT_KEYS})
    # The published vocabulary has no <image> token: the placeholder id is the first id past it.
    return Florence2Config(vision_config=davit.to_dict(), text_config=bart.to_dict(),
                           image_token_id=bart.vocab_size)


def _untie(tensors: dict[str, torch.Tensor], names: tuple[str, ...]) -> None:
    """Keep one tensor of a tied group under names[0]; the others must be absent or equal to it."""
    present = [n for n in names if n in tensors]
    if not present:
        return
    keep = tensors.pop(present[0])
    for name in present[1:]:
        other = tensors.pop(name)
        if other.shape != keep.shape or not torch.equal(other, keep):
            raise CheckpointError(f"{name} differs from {present[0]}; the native model ties them")
    tensors[names[0]] = keep


def _retie(tensors: dict[str, torch.Tensor], names: tuple[str, ...]) -> None:
    if names[0] in tensors:
        for name in names[1:]:
            tensors[name] = tensors[names[0]]


def _remote_to_native(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Native-named tensors, and the source name of each (for error messages)."""
    bias = tensors.pop(REMOTE_LOGITS_BIAS, None)
    if bias is not None and bool(bias.any()):
        raise CheckpointError(f"{REMOTE_LOGITS_BIAS} is not zero; the native model has no final logits bias")
    _untie(tensors, REMOTE_TIED)
    renamed, source = {}, {}
    for name, tensor in tensors.items():
        new = apply_renamings(name, REMOTE_TO_NATIVE)
        if new in renamed:
            raise CheckpointError(f"{name} and {source[new]} both map to {new}")
        renamed[new] = tensor.t().contiguous() if new in TRANSPOSED else tensor
        source[new] = name
    return renamed, source


def _remote_name(native: str) -> str:
    return apply_renamings(native, NATIVE_TO_REMOTE)


def _load_strict(config: Florence2Config, tensors: dict[str, torch.Tensor], source: dict[str, str],
                 source_name) -> Florence2ForConditionalGeneration:
    """The native model holding exactly `tensors` (no copy, no cast); every slot and tensor accounted for.

    `source` maps native names back to the checkpoint's; `source_name` names a slot the checkpoint lacks."""
    with torch.device("meta"):
        model = Florence2ForConditionalGeneration(config)
    _untie(tensors, NATIVE_TIED)
    _retie(tensors, NATIVE_TIED)
    expected = model.state_dict()
    left_over = sorted(source.get(n, n) for n in set(tensors) - set(expected))
    missing = sorted(n if source_name(n) == n else f"{source_name(n)} (native {n})"
                     for n in set(expected) - set(tensors))
    if left_over or missing:
        raise CheckpointError(f"tensors without a slot in the native model: {left_over or 'none'}; "
                              f"tensors the checkpoint lacks: {missing or 'none'}")
    wrong = [f"{source.get(n, n)} {tuple(t.shape)} (native {n} wants {tuple(expected[n].shape)})"
             for n, t in tensors.items() if t.shape != expected[n].shape]
    if wrong:
        raise CheckpointError(f"tensor shapes do not fit the config: {wrong}")
    model.load_state_dict(tensors, strict=True, assign=True)
    model.tie_weights()
    return model.eval()


def _copy_tokenizer_files(src: Path, out: Path) -> list[str]:
    copied = [name for name in TOKENIZER_FILES if (src / name).is_file()]
    for name in copied:
        shutil.copy2(src / name, out / name)
    return copied


def convert_florence2(src_dir: str, out_dir: str) -> dict:
    """Write a Florence-2 checkpoint (remote or native layout) to `out_dir` in the native layout.

    Returns stats: layout, tensors (as stored in the source), dtype, parameters, tokenizer_files."""
    src, out = _distinct(src_dir, out_dir)
    layout = detect_florence2_layout(src)
    raw = _read_config(src)
    tensors = _load_tensors(src)
    n_tensors = len(tensors)
    if layout == "remote":
        config = _native_config(raw, src / "config.json")
        tensors, source = _remote_to_native(tensors)
        source_name = _remote_name
    else:
        config = Florence2Config.from_dict(raw)
        source, source_name = {}, str
    floating = {t.dtype for t in tensors.values() if t.is_floating_point()}
    model = _load_strict(config, tensors, source, source_name)
    if len(floating) == 1:
        model.config.dtype = next(iter(floating))
    with _replacing_dir(out) as tmp:
        model.save_pretrained(tmp, max_shard_size="1000GB")  # one model.safetensors
        copied = _copy_tokenizer_files(src, tmp)
    return {"layout": layout, "tensors": n_tensors, "dtype": _dtype_name(floating),
            "parameters": sum(p.numel() for p in model.parameters()), "tokenizer_files": copied}


# ---------------------------------------------------------------------------------------------------------
# Gemma-2.

def stored_elements(paths: list[Path]) -> Counter:
    """Elements per stored dtype ("BF16", "F32", ...) of the named safetensors files, from their headers
    (no tensor data is read)."""
    counts: Counter = Counter()
    for path in paths:
        with safe_open(path, "pt") as f:
            for name in f.keys():
                piece = f.get_slice(name)
                counts[piece.get_dtype()] += int(torch.Size(piece.get_shape()).numel())
    return counts


def _header_stats(src: Path, paths: list[Path]) -> tuple[int, int, set[str]]:
    """Tensor count, element count and dtypes from safetensors headers (no tensor data is read)."""
    names, n_elements, dtypes = set(), 0, set()
    for path in paths:
        with safe_open(path, "pt") as f:
            for name in f.keys():
                piece = f.get_slice(name)
                names.add(name)
                n_elements += int(torch.Size(piece.get_shape()).numel())
                dtypes.add(piece.get_dtype())
    _check_index_covers(src, names)
    return len(names), n_elements, dtypes


def import_gemma2(src_dir: str, out_dir: str) -> dict:
    """Check a Hugging Face Gemma-2 checkpoint and expose it at `out_dir` as symlinks to its files.

    Returns stats: shards, tensors, dtype, parameters, files (the names linked)."""
    src, out = _distinct(src_dir, out_dir)
    config = _read_config(src)
    if config.get("model_type") != "gemma2":
        raise CheckpointError(f"{src / 'config.json'}: model_type is {config.get('model_type')!r}, not 'gemma2'")
    if not (src / "tokenizer.json").is_file():
        raise CheckpointError(f"{src / 'tokenizer.json'}: missing; the Gemma-2 tokenizer is read from it")
    weights = weight_files(src)
    n_tensors, n_elements, dtypes = _header_stats(src, weights)
    index = [src / SAFETENSORS_INDEX] if (src / SAFETENSORS_INDEX).is_file() else []
    files = [src / "config.json", src / "tokenizer.json", *index, *weights]
    files += [src / name for name in GEMMA2_OPTIONAL_FILES if (src / name).is_file()]
    root = src.resolve()
    with _replacing_dir(out) as tmp:
        for path in files:
            os.symlink(root / path.name, tmp / path.name)
    return {"shards": len(weights), "tensors": n_tensors, "dtype": _dtype_name(dtypes),
            "parameters": n_elements, "files": sorted(p.name for p in files)}
