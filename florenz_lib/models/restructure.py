"""Model surgery: turn the base models into Florenz models (DESIGN.md section 5).

The Florenz model is built on the meta device (shapes, no storage) and takes the base models' tensors as
they are (`load_state_dict(assign=True)`: no copy, in the dtype they were loaded in). Only what is new gets
values:
- the Gemma family's gated cross attention (cross_attention.py): each projection weight is drawn
  normal(0, 0.02) from a `torch.Generator` of its own, seeded with the restructure seed, directly in the
  dtype of the Gemma base, in a fixed order: decoder layer by layer, and within a layer the cross-attention
  parameters by sorted name (k_proj, o_proj, q_proj, v_proj); each gate is 0 and each
  post_encoder_attention_layernorm a copy of its layer's post_attention_layernorm;
- the encoder's extra embedding rows for the <image> placeholder: the mean of the old rows;
- the Florence family's decoder embeddings: FVT of the encoder's.
Nothing draws from the global RNG (a caller's RNG state is left as it was), nothing but the new
projections is drawn at all, and the same seed gives the same model bit for bit. (Until this design the
projections were drawn from the global RNG as a CPU build of the whole model draws them, so initial models
made before it have other random values for the same seed.)
"""
from __future__ import annotations

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import Florence2Config, Florence2ForConditionalGeneration, Gemma2Config, Gemma2ForCausalLM

from .cross_attention import CROSS_ATTENTION_INIT_STD
from .florenz import DECODER_BOS, DECODER_EOS, DECODER_PAD, FlorenzConfig, FlorenzForConditionalGeneration
from .fvt import fast_vocabulary_transfer
from .tokenizers import IMAGE_TOKEN

EMBEDDING_ROW_MULTIPLE = 64  # the authors' Florence-2 variants round the encoder vocabulary up to this


def build_on_meta(config: FlorenzConfig) -> FlorenzForConditionalGeneration:
    """The Florenz model on the meta device: shapes, no storage (nothing is drawn, no RNG is touched)."""
    with torch.device("meta"):
        return FlorenzForConditionalGeneration(config)


def draw_cross_attention(decoder: nn.Module, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The new cross-attention projection weights of a (meta) Gemma-family decoder, keyed by their names in
    the decoder: normal(0, 0.02) in dtype, from a generator seeded with seed, layer by layer and by sorted
    parameter name within a layer."""
    generator = torch.Generator().manual_seed(seed)
    values = {}
    for i, layer in enumerate(decoder.layers):
        for name, param in sorted(layer.encoder_attn.named_parameters()):
            values[f"layers.{i}.encoder_attn.{name}"] = torch.empty(param.shape, dtype=dtype).normal_(
                0.0, CROSS_ATTENTION_INIT_STD, generator=generator)
    return values


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
    model = build_on_meta(config)
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


def take_gemma_decoder(model: FlorenzForConditionalGeneration, gemma: Gemma2ForCausalLM, seed: int,
                       clone: bool) -> None:
    """All of Gemma-2's weights as they are; the new projections drawn (draw_cross_attention) in Gemma's
    dtype, gates 0, and each post_encoder_attention_layernorm a copy of its layer's post_attention_layernorm."""
    state = dict(gemma.model.state_dict())
    base_keys = set(state)
    dtype = gemma.model.embed_tokens.weight.dtype
    for i, layer in enumerate(model.decoder.layers):
        norm = state.get(f"layers.{i}.post_attention_layernorm.weight")
        if norm is None:
            raise ValueError(f"Gemma-2 weights do not fit the decoder: no layers.{i}.post_attention_layernorm")
        state[f"layers.{i}.post_encoder_attention_layernorm.weight"] = norm.detach().clone()
        state[f"layers.{i}.encoder_attn_gate"] = torch.zeros(layer.encoder_attn_gate.shape, dtype=dtype)
    state.update(draw_cross_attention(model.decoder, seed, dtype))
    _assign(model.decoder, state, gemma.model, clone, "Gemma-2 weights for the decoder",
            frozenset(set(state) - base_keys))


def florenz_from_florence2_and_gemma2(florence: Florence2ForConditionalGeneration, gemma: Gemma2ForCausalLM,
                                      encoder_tokenizer: Tokenizer | None = None, clone: bool = True,
                                      seed: int = 0) -> FlorenzForConditionalGeneration:
    """Gemma family: Florence-2 vision tower and encoder, Gemma-2 decoder with gated cross attention, its
    new projections drawn from seed. With an encoder tokenizer its <image> id becomes the model's (and gets
    an encoder row); clone=False takes the bases' tensors themselves (the bases must not be used afterwards)."""
    model = build_on_meta(gemma_family_config(florence.config, gemma.config, encoder_tokenizer))
    take_florence_encoder(model, florence, clone)
    take_gemma_decoder(model, gemma, seed, clone)
    return finish_model(model)
