"""Tiny random base checkpoints in the layouts they are published in, for tests of checkpoint conversion.

`write_tiny_florence2` saves a tiny transformers `Florence2ForConditionalGeneration` either natively
(`save_pretrained`) or in Microsoft's remote-code layout: a config.json with `auto_map` and the hub's
florence2_language / davit sub-configs, and the weights under the published names (as listed by
transformers' convert_florence2_original_pytorch_to_hf.py and the hub's modeling_florence2.py):
`language_model.model.*`, `language_model.lm_head.weight`, `language_model.final_logits_bias`,
`vision_tower.convs.N.proj.*`, `vision_tower.blocks.S.B.{spatial,channel}_block.{conv1.fn.dw, window_attn.norm,
window_attn.fn.qkv, ffn.norm, ffn.fn.net.fc1, ...}`, and `image_projection` as a [vision_dim, projection_dim]
parameter (the remote model computes `x @ image_projection`). The native -> remote table below is written
from those published names on its own, not derived from florenz_lib/models/convert.py, so that a wrong
rule there cannot be mirrored here.

`write_tiny_gemma2` saves a tiny `Gemma2ForCausalLM` with `save_pretrained`, sharded by default.
Tokenizer files are not written here (tests/tokenizer_fixtures.py writes those).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Florence2ForConditionalGeneration, Gemma2ForCausalLM

from florenz_lib.models.configs import florence2_config, gemma2_config

# Native name pattern -> published remote name, applied in order (re.sub on the whole name).
NATIVE_TO_REMOTE = [
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\.weight$", "language_model.lm_head.weight"),
    (r"^model\.vision_tower\.convs\.(\d+)\.conv\.", r"vision_tower.convs.\1.proj."),
    (r"^model\.vision_tower\.", "vision_tower."),
    (r"_block\.conv([12])\.", r"_block.conv\1.fn.dw."),
    (r"spatial_block\.norm1\.", "spatial_block.window_attn.norm."),
    (r"channel_block\.norm1\.", "channel_block.channel_attn.norm."),
    (r"spatial_block\.window_attn\.(qkv|proj)\.", r"spatial_block.window_attn.fn.\1."),
    (r"channel_block\.channel_attn\.(qkv|proj)\.", r"channel_block.channel_attn.fn.\1."),
    (r"_block\.norm2\.", "_block.ffn.norm."),
    (r"_block\.ffn\.(fc[12])\.", r"_block.ffn.fn.net.\1."),
    (r"^model\.multi_modal_projector\.image_projection\.weight$", "image_projection"),
    (r"^model\.multi_modal_projector\.image_proj_norm\.", "image_proj_norm."),
    (r"^model\.multi_modal_projector\.image_position_embed\.", "image_pos_embed."),
    (r"^model\.multi_modal_projector\.visual_temporal_embed\.", "visual_temporal_embed."),
]
REMOTE_TIED_ALIASES = ("language_model.model.encoder.embed_tokens.weight",
                       "language_model.model.decoder.embed_tokens.weight", "language_model.lm_head.weight")


def remote_name(native: str) -> str:
    for pattern, repl in NATIVE_TO_REMOTE:
        native = re.sub(pattern, repl, native)
    return native


def tiny_florence2(vocab_size: int, seed: int = 0, d_model: int = 32, vision_dims=(8, 16),
                   image_token_id: int | None = None) -> Florence2ForConditionalGeneration:
    """A tiny random native Florence-2 (fp32, eval mode); image_token_id defaults to vocab_size."""
    base = {"vision_dims": list(vision_dims), "vision_depths": [1] * len(vision_dims),
            "vision_heads": [1, 2, 4, 8][:len(vision_dims)], "d_model": d_model, "encoder_layers": 1,
            "decoder_layers": 1, "ffn_dim": 2 * d_model, "attention_heads": 2}
    config = florence2_config(base, vocab_size)
    config.image_token_id = vocab_size if image_token_id is None else image_token_id
    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration(config).eval()
    with torch.no_grad():  # the published final norm biases etc. are not zero; make every tensor count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def remote_config(model: Florence2ForConditionalGeneration, dtype: torch.dtype) -> dict:
    """config.json as the hub's remote-code Florence-2 checkpoints have it."""
    text, vision = model.config.text_config, model.config.vision_config
    text_keys = ("vocab_size", "max_position_embeddings", "d_model", "encoder_layers", "decoder_layers",
                 "encoder_ffn_dim", "decoder_ffn_dim", "encoder_attention_heads", "decoder_attention_heads",
                 "encoder_layerdrop", "decoder_layerdrop", "activation_function", "dropout", "attention_dropout",
                 "activation_dropout", "init_std", "classifier_dropout", "scale_embedding", "pad_token_id",
                 "bos_token_id", "eos_token_id", "decoder_start_token_id", "forced_eos_token_id")
    text_config = {k: getattr(text, k) for k in text_keys}
    # keys the published text_config carries that the remote code never reads, and generation defaults
    text_config.update(model_type="florence2_language", add_bias_logits=False, add_final_layer_norm=False,
                       normalize_before=False, classif_dropout=0.1, gradient_checkpointing=False,
                       is_encoder_decoder=True, num_hidden_layers=text.encoder_layers, early_stopping=True,
                       no_repeat_ngram_size=3, num_beams=3, forced_bos_token_id=0,
                       label2id={"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2})
    vision_config = {
        "model_type": "davit", "drop_path_rate": vision.drop_path_rate, "patch_size": list(vision.patch_size),
        "patch_stride": list(vision.patch_stride), "patch_padding": list(vision.patch_padding),
        "patch_prenorm": list(vision.patch_prenorm), "enable_checkpoint": False,
        "dim_embed": list(vision.embed_dim), "num_heads": list(vision.num_heads),
        "num_groups": list(vision.num_groups), "depths": list(vision.depths), "window_size": vision.window_size,
        "projection_dim": vision.projection_dim,
        "visual_temporal_embedding": {"type": "COSINE", "max_temporal_embeddings": vision.max_temporal_embeddings},
        "image_pos_embed": {"type": "learned_abs_2d", "max_pos_embeddings": vision.max_position_embeddings},
        "image_feature_source": ["spatial_avg_pool", "temporal_avg_pool"],
    }
    return {
        "_name_or_path": "florence2", "architectures": ["Florence2ForConditionalGeneration"],
        "auto_map": {"AutoConfig": "configuration_florence2.Florence2Config",
                     "AutoModelForCausalLM": "modeling_florence2.Florence2ForConditionalGeneration"},
        "bos_token_id": text.bos_token_id, "eos_token_id": text.eos_token_id, "pad_token_id": text.pad_token_id,
        "ignore_index": -100, "model_type": "florence2", "projection_dim": vision.projection_dim,
        "text_config": text_config, "vision_config": vision_config, "vocab_size": text.vocab_size,
        "torch_dtype": str(dtype).removeprefix("torch."), "transformers_version": "4.41.0.dev0",
        "is_encoder_decoder": True,
    }


def remote_state_dict(model: Florence2ForConditionalGeneration, dtype: torch.dtype = torch.float32,
                      tied_aliases: bool = True) -> dict[str, torch.Tensor]:
    """The model's tensors under the published remote names (separate storage each, as safetensors wants)."""
    state = {}
    for name, tensor in model.state_dict().items():
        if not tied_aliases and name in ("model.language_model.encoder.embed_tokens.weight",
                                         "model.language_model.decoder.embed_tokens.weight", "lm_head.weight"):
            continue
        tensor = tensor.detach().to(dtype)
        if name == "model.multi_modal_projector.image_projection.weight":
            tensor = tensor.t()  # nn.Linear weight [proj, dim] -> remote parameter [dim, proj]
        state[remote_name(name)] = tensor.clone().contiguous()
    state["language_model.final_logits_bias"] = torch.zeros(1, model.config.text_config.vocab_size, dtype=dtype)
    return state


def write_remote_checkpoint(out_dir, config: dict, state: dict[str, torch.Tensor], shards: int = 1) -> Path:
    """config.json + model.safetensors (or an index and `shards` shards) from a remote-named state dict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    if shards == 1:
        save_file(state, out / "model.safetensors", metadata={"format": "pt"})
        return out
    names = sorted(state)
    weight_map = {}
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: state[n] for n in names[i::shards]}
        save_file(part, out / shard, metadata={"format": "pt"})
        weight_map.update({n: shard for n in part})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out


def write_tiny_florence2(out_dir, layout: str, vocab_size: int, seed: int = 0, d_model: int = 32,
                         vision_dims=(8, 16), image_token_id: int | None = None,
                         dtype: torch.dtype = torch.float32, tied_aliases: bool = True, shards: int = 1) -> Path:
    """A tiny random Florence-2 checkpoint in `layout` ("remote" or "native") at `out_dir`.

    Same seed and sizes give the same weights in both layouts. `tied_aliases` (remote only) also stores the
    encoder/decoder embed_tokens and lm_head copies of the shared embedding, as the remote model's full
    state dict has them; `shards` > 1 (remote only) writes an index and shards. `image_token_id` (default
    vocab_size, past the vocabulary as in the published Florence-2) is stored by the native layout only: the
    remote config has no such field, and conversion sets it to vocab_size."""
    model = tiny_florence2(vocab_size, seed, d_model, vision_dims, image_token_id)
    out = Path(out_dir)
    if layout == "native":
        model.to(dtype).save_pretrained(out)
        return out
    if layout != "remote":
        raise ValueError(f"layout must be 'remote' or 'native', not {layout!r}")
    return write_remote_checkpoint(out, remote_config(model, dtype), remote_state_dict(model, dtype, tied_aliases),
                                   shards)


def tiny_gemma2(vocab_size: int, seed: int = 0) -> Gemma2ForCausalLM:
    base = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 16, "intermediate_size": 64}
    torch.manual_seed(seed)
    return Gemma2ForCausalLM(gemma2_config(base, vocab_size)).eval()


def write_tiny_gemma2(out_dir, vocab_size: int, seed: int = 0, sharded: bool = True) -> Path:
    """A tiny random Gemma-2 checkpoint saved with save_pretrained; `sharded` makes 2+ shards and an index."""
    model = tiny_gemma2(vocab_size, seed)
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    out = Path(out_dir)
    model.save_pretrained(out, max_shard_size=max(total // 3, 1) if sharded else "1000GB")
    return out
