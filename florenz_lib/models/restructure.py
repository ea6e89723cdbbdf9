"""Model surgery: turn the base models into Florenz models (DESIGN.md section 5).

The Florenz model is built on the meta device (shapes, no storage) and takes the base models' tensors as
they are (`load_state_dict(assign=True)`: no copy, in the dtype they were loaded in); only what is new is
materialised: the Gemma family's gated cross attention, the encoder's extra embedding rows for the <image>
placeholder, and the Florence family's FVT decoder embeddings.

The new cross-attention projections are drawn from the global torch RNG exactly as building the whole
model on the CPU would draw them: building on the meta device records every random (and every in-place)
initialisation op in order, and `_replay_init` replays the record on the CPU, keeping the values of the new
layers and throwing the rest away. The same seed therefore gives the same model as a plain CPU build (and
as before this file built on the meta device), at the cost of drawing (not keeping) the random numbers of
the layers built before them.
"""
from __future__ import annotations

from dataclasses import dataclass
from unittest import mock

import torch
from tokenizers import Tokenizer
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from transformers import (Florence2Config, Florence2ForConditionalGeneration, Gemma2Config, Gemma2ForCausalLM,
                          modeling_utils)

from .florenz import DECODER_BOS, DECODER_EOS, DECODER_PAD, FlorenzConfig, FlorenzForConditionalGeneration
from .fvt import fast_vocabulary_transfer
from .tokenizers import IMAGE_TOKEN

EMBEDDING_ROW_MULTIPLE = 64  # the authors' Florence-2 variants round the encoder vocabulary up to this


# ---------------------------------------------------------------------------------------------------------
# Recording initialisation on the meta device and replaying it on the CPU.

@dataclass(frozen=True)
class _TensorSpec:
    storage: int     # the storage's identity (kept alive by the recorder, so never reused)
    size: tuple
    stride: tuple
    offset: int
    dtype: torch.dtype


@dataclass
class _Op:
    func: object
    args: tuple
    kwargs: dict
    random: bool
    written: tuple   # storages the op writes (in-place arguments, or the result of a random factory)


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


class _InitRecorder(TorchDispatchMode):
    """Records, in order, the ops on meta tensors that draw random numbers or write a tensor in place."""

    def __init__(self):
        super().__init__()
        self.ops: list[_Op] = []
        self._alive: list[torch.Tensor] = []

    def _spec(self, t):
        if not isinstance(t, torch.Tensor):
            return t
        self._alive.append(t)
        return _TensorSpec(_storage_key(t), tuple(t.shape), tuple(t.stride()), t.storage_offset(), t.dtype)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        random = torch.Tag.nondeterministic_seeded in func.tags
        schema = func._schema
        written = [a for a, arg in zip(args, schema.arguments) if isinstance(a, torch.Tensor)
                   and arg.alias_info is not None and arg.alias_info.is_write]
        written += [v for k, v in kwargs.items() if isinstance(v, torch.Tensor) and any(
            arg.name == k and arg.alias_info is not None and arg.alias_info.is_write for arg in schema.arguments)]
        if random and not written:  # a random factory (torch.randn and the like): it writes its result
            written = [t for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, torch.Tensor)]
        if random or written:
            self.ops.append(_Op(func, tree_map(self._spec, args), tree_map(self._spec, kwargs), random,
                                tuple(_storage_key(t) for t in written)))
            self._alive.extend(written)
        return out


def _refers(op: _Op) -> set[int]:
    found = set(op.written)
    tree_map(lambda x: found.add(x.storage) if isinstance(x, _TensorSpec) else None, (op.args, op.kwargs))
    return found


def _fills_whole(op: _Op, keep: dict[int, int]) -> int | None:
    """The kept storage a random op fills whole, with values independent of what it held (an in-place draw
    such as normal_ over the whole tensor, or a random factory's result); None for any other op."""
    if not op.random or len(op.written) != 1 or op.written[0] not in keep:
        return None
    key = op.written[0]
    target = op.args[0] if op.args and isinstance(op.args[0], _TensorSpec) else None
    if target is None:  # a random factory
        return None if any(isinstance(a, _TensorSpec) for a in list(op.args) + list(op.kwargs.values())) else key
    contiguous = torch.empty(target.size, device="meta").stride()
    whole = target.storage == key and target.offset == 0 and target.stride == contiguous
    numel = 1
    for n in target.size:
        numel *= n
    return key if whole and numel == keep[key] else None


def _replay_init(ops: list[_Op], keep: dict[int, int], dtype: torch.dtype | None = None) -> dict[int, torch.Tensor]:
    """Replays the recorded ops on the CPU, drawing from the global RNG as the meta-device build would have
    drawn on the CPU. keep maps the storages to materialise to their size in elements; returns each as a
    flat CPU tensor. A kept storage lives from the last op that fills it whole with fresh random values
    (earlier values are overwritten, only their draws count) to the last op that refers to it, after which
    it is cast to dtype (if given). Ops after the last one that writes a kept storage are left out (they
    draw numbers nothing uses); random ops on anything else run on throwaway tensors of the same size,
    stride and dtype (the RNG's consumption depends on them); other ops on anything else do not run."""
    last = max((i for i, op in enumerate(ops) if set(op.written) & keep.keys()), default=-1)
    ops = ops[: last + 1]
    begins: dict[int, int] = {}
    for i, op in enumerate(ops):
        key = _fills_whole(op, keep)
        if key is not None:
            begins[key] = i
    live = lambda key, i: key in keep and i >= begins.get(key, 0)  # noqa: E731
    final = {key: i for i, op in enumerate(ops) for key in _refers(op) if live(key, i)}
    cast_after: dict[int, list[int]] = {}
    for key, i in final.items():
        cast_after.setdefault(i, []).append(key)
    kept: dict[int, torch.Tensor] = {}
    for i, op in enumerate(ops):
        writes_kept = any(live(key, i) for key in op.written)
        if not (op.random or writes_kept):
            continue

        def materialise(x):
            if isinstance(x, torch.device) and x.type == "meta":
                return torch.device("cpu")
            if not isinstance(x, _TensorSpec):
                return x
            if live(x.storage, i):
                if x.storage not in kept:
                    kept[x.storage] = torch.empty(keep[x.storage], dtype=x.dtype)
                return kept[x.storage].as_strided(x.size, x.stride, x.offset)
            if not op.random:
                raise RuntimeError(f"cannot replay {op.func}: it writes a new layer from a tensor of a layer "
                                   "that is not materialised")
            return torch.empty_strided(x.size, x.stride, dtype=x.dtype)

        args, kwargs = tree_map(materialise, op.args), tree_map(materialise, op.kwargs)
        out = op.func(*args, **kwargs)
        if writes_kept and _fills_whole(op, keep) is not None and not any(
                isinstance(a, torch.Tensor) for a in list(args) + list(kwargs.values())):
            kept[op.written[0]] = out.reshape(-1)  # a random factory's result that became a new layer
        for key in cast_after.get(i, ()):
            if dtype is not None and key in kept:
                kept[key] = kept[key].to(dtype)
    missing = keep.keys() - kept.keys()
    if missing:
        raise RuntimeError(f"{len(missing)} new tensor(s) were never initialised while building the model")
    return kept


def build_on_meta(config: FlorenzConfig, materialise: tuple[str, ...] = (), dtype: torch.dtype | None = None
                  ) -> tuple[FlorenzForConditionalGeneration, dict[str, torch.Tensor]]:
    """The Florenz model on the meta device, and the CPU values of its parameters whose names contain one of
    `materialise`, drawn from the global RNG as a CPU build draws them (in the default dtype), then cast
    to dtype if given."""
    recorder = _InitRecorder()
    # transformers skips weight initialisation when it sees a meta-device context; the record needs it run
    # as on the CPU (on meta tensors it costs nothing)
    with torch.device("meta"), recorder, mock.patch.object(modeling_utils, "get_torch_context_manager_or_global_device",
                                                           lambda: None):
        model = FlorenzForConditionalGeneration(config)
    wanted = {name: p for name, p in model.named_parameters() if any(m in name for m in materialise)}
    keep = {_storage_key(p): p.untyped_storage().nbytes() // p.element_size() for p in wanted.values()}
    flat = _replay_init(recorder.ops, keep, dtype) if keep else {}
    values = {name: flat[_storage_key(p)].as_strided(p.shape, p.stride(), p.storage_offset())
              for name, p in wanted.items()}
    return model, values


# ---------------------------------------------------------------------------------------------------------
# Taking the base models' tensors.

def _assign(target: nn.Module, state: dict[str, torch.Tensor], source: nn.Module, clone: bool, what: str,
            fresh: frozenset[str] = frozenset()) -> None:
    """target's parameters and persistent buffers become `state`'s tensors, its non-persistent buffers
    (rotary frequencies, embedding scales) the same-named ones of `source`; with clone, copies of them, but
    for the `fresh` keys of state (tensors made for the new model)."""
    if clone:
        state = {k: v if k in fresh else v.detach().clone() for k, v in state.items()}
    missing, unexpected = target.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"{what} does not fit: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    persistent = set(target.state_dict())
    source_buffers = dict(source.named_buffers())
    for name, buffer in list(target.named_buffers()):
        if name in persistent:
            continue
        if name not in source_buffers:
            raise ValueError(f"{what}: the base model has no buffer {name}")
        owner, _, leaf = name.rpartition(".")
        module = target.get_submodule(owner) if owner else target
        value = source_buffers[name].detach()
        module._buffers[leaf] = value.clone() if clone else value


def _on_meta(model: nn.Module) -> list[str]:
    return [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]


def finish_model(model: FlorenzForConditionalGeneration) -> FlorenzForConditionalGeneration:
    model.lm_head.weight = model.decoder.embed_tokens.weight  # tied (the assignment replaced the embedding)
    left = _on_meta(model)
    if left:
        raise RuntimeError(f"restructure left tensors without values: {', '.join(left[:8])}"
                           f"{' ...' if len(left) > 8 else ''}")
    return model


def encoder_rows_for(image_token_id: int, rows: int) -> int:
    """Encoder embedding rows needed for the <image> id: as many as there are when it has a row, else the
    least multiple of EMBEDDING_ROW_MULTIPLE past it (51289 -> 51328, as the authors' variants have)."""
    if image_token_id < rows:
        return rows
    return -(-(image_token_id + 1) // EMBEDDING_ROW_MULTIPLE) * EMBEDDING_ROW_MULTIPLE


def grow_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """weight with rows - len(weight) more rows, each the mean (in float32) of the old rows."""
    if rows == weight.shape[0]:
        return weight
    mean = weight.detach().to(torch.float32).mean(dim=0).to(weight.dtype)
    return torch.cat([weight.detach(), mean.expand(rows - weight.shape[0], -1)], dim=0)


def florence2_for_florenz(florence_config: Florence2Config, encoder_tokenizer: Tokenizer | None) -> dict:
    """The florence2 part of a FlorenzConfig: the base's, with image_token_id the encoder tokenizer's <image>
    id and the encoder vocabulary grown to give it a row. Without a tokenizer the base's id is kept."""
    data = florence_config.to_dict()
    if encoder_tokenizer is not None:
        image_id = encoder_tokenizer.token_to_id(IMAGE_TOKEN)
        if image_id is None:
            raise ValueError(f"the encoder tokenizer has no {IMAGE_TOKEN} token")
        data["image_token_id"] = image_id
    data["text_config"]["vocab_size"] = encoder_rows_for(data["image_token_id"], data["text_config"]["vocab_size"])
    return data


def take_florence_encoder(model: FlorenzForConditionalGeneration, florence: Florence2ForConditionalGeneration,
                           clone: bool) -> torch.Tensor:
    """Vision tower, projector and BART encoder from Florence-2; returns the (grown) encoder embedding."""
    base = florence.model
    _assign(model.vision_tower, base.vision_tower.state_dict(), base.vision_tower, clone, "Florence-2 vision tower")
    _assign(model.multi_modal_projector, base.multi_modal_projector.state_dict(), base.multi_modal_projector, clone,
            "Florence-2 projector")
    shared = base.language_model.shared.weight
    embedding = grow_rows(shared, model.encoder.embed_tokens.num_embeddings)
    state = dict(base.language_model.encoder.state_dict())
    state["embed_tokens.weight"] = embedding
    fresh = frozenset() if embedding is shared else frozenset({"embed_tokens.weight"})
    _assign(model.encoder, state, base.language_model.encoder, clone, "Florence-2 encoder", fresh)
    return model.encoder.embed_tokens.weight


def florenz_from_florence2(florence: Florence2ForConditionalGeneration, encoder_tokenizer: Tokenizer,
                           decoder_tokenizer: Tokenizer, clone: bool = True) -> FlorenzForConditionalGeneration:
    """Florence family: keep Florence-2 whole, move its decoder to the decoder tokenizer by FVT.
    clone=False takes the base's tensors themselves (the base must not be used afterwards)."""
    config = FlorenzConfig(family="florence", florence2=florence2_for_florenz(florence.config, encoder_tokenizer),
                           decoder_vocab_size=decoder_tokenizer.get_vocab_size())
    model, _ = build_on_meta(config)
    encoder_embedding = take_florence_encoder(model, florence, clone)
    decoder_state = {k: v for k, v in florence.model.language_model.decoder.state_dict().items()
                     if not k.startswith("embed_tokens.")}
    text = florence.config.text_config
    special_map = {DECODER_PAD: text.pad_token_id, DECODER_EOS: text.eos_token_id, DECODER_BOS: text.bos_token_id}
    if decoder_tokenizer.token_to_id("<unk>") is not None and encoder_tokenizer.token_to_id("<unk>") is not None:
        special_map[decoder_tokenizer.token_to_id("<unk>")] = encoder_tokenizer.token_to_id("<unk>")
    # the encoder's rows, grown for <image>: BART shares one matrix between encoder and decoder
    decoder_state["embed_tokens.weight"] = fast_vocabulary_transfer(encoder_embedding, encoder_tokenizer,
                                                                    decoder_tokenizer, special_map)
    _assign(model.decoder, decoder_state, florence.model.language_model.decoder, clone, "Florence-2 decoder",
            frozenset({"embed_tokens.weight"}))
    return finish_model(model)


def gemma_family_config(florence_config: Florence2Config, gemma_config: Gemma2Config,
                        encoder_tokenizer: Tokenizer | None) -> FlorenzConfig:
    return FlorenzConfig(family="gemma", florence2=florence2_for_florenz(florence_config, encoder_tokenizer),
                         decoder_vocab_size=gemma_config.vocab_size, gemma2=gemma_config.to_dict())


def new_gemma_layers(config: FlorenzConfig, dtype: torch.dtype | None = None) -> tuple[
        FlorenzForConditionalGeneration, dict[str, torch.Tensor]]:
    """The gemma-family model on the meta device and its new cross-attention projections (normal(0, 0.02)),
    drawn from the global RNG as a CPU build draws them, in dtype (default: as drawn, float32)."""
    model, values = build_on_meta(config, materialise=("encoder_attn.",), dtype=dtype)
    return model, {name.removeprefix("decoder."): v for name, v in values.items()}


def take_gemma_decoder(model: FlorenzForConditionalGeneration, gemma: Gemma2ForCausalLM,
                       projections: dict[str, torch.Tensor], clone: bool) -> None:
    """All of Gemma-2's weights as they are; the new projections (cast to Gemma's dtype), gates 0, and each
    post_encoder_attention_layernorm a copy of its layer's post_attention_layernorm."""
    state = dict(gemma.model.state_dict())
    base_keys = set(state)
    dtype = gemma.model.embed_tokens.weight.dtype
    for i, layer in enumerate(model.decoder.layers):
        norm = state.get(f"layers.{i}.post_attention_layernorm.weight")
        if norm is None:
            raise ValueError(f"Gemma-2 weights do not fit the decoder: no layers.{i}.post_attention_layernorm")
        state[f"layers.{i}.post_encoder_attention_layernorm.weight"] = norm.detach().clone()
        state[f"layers.{i}.encoder_attn_gate"] = torch.zeros(layer.encoder_attn_gate.shape, dtype=dtype)
    for name, value in projections.items():
        state[name] = value.to(dtype)
    _assign(model.decoder, state, gemma.model, clone, "Gemma-2 weights for the decoder",
            frozenset(set(state) - base_keys))


def florenz_from_florence2_and_gemma2(florence: Florence2ForConditionalGeneration, gemma: Gemma2ForCausalLM,
                                      encoder_tokenizer: Tokenizer | None = None,
                                      clone: bool = True) -> FlorenzForConditionalGeneration:
    """Gemma family: Florence-2 vision tower and encoder, Gemma-2 decoder with gated cross attention.
    With an encoder tokenizer its <image> id becomes the model's (and gets an encoder row); clone=False
    takes the bases' tensors themselves (the bases must not be used afterwards)."""
    model, projections = new_gemma_layers(gemma_family_config(florence.config, gemma.config, encoder_tokenizer),
                                          gemma.model.embed_tokens.weight.dtype)
    take_florence_encoder(model, florence, clone)
    take_gemma_decoder(model, gemma, projections, clone)
    return finish_model(model)

