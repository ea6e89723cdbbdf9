"""Published base checkpoints -> the layout the pipeline loads (florenz_lib/models/convert.py)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models
from transformers import Florence2ForConditionalGeneration, Gemma2ForCausalLM

from florenz_lib.models import convert
from florenz_lib.models.convert import CheckpointError, convert_florence2, detect_florence2_layout, import_gemma2
from checkpoint_fixtures import (remote_config, remote_state_dict, tiny_florence2, tiny_gemma2,
                                 write_remote_checkpoint, write_tiny_florence2, write_tiny_gemma2)

VOCAB = 60
PLACEHOLDER = 4  # an id inside the tiny vocabulary, so that the native forward can embed the image slots
N_IMAGE_TOKENS = 17  # 32 px -> 8 x 8 (stride 4) -> 4 x 4 (stride 2), plus the pooled token


def _logits(model: Florence2ForConditionalGeneration) -> torch.Tensor:
    """Logits for fixed pixel_values, input_ids (image slots + text) and decoder_input_ids."""
    model.config.image_token_id = PLACEHOLDER
    gen = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(2, 3, 32, 32, generator=gen)
    text = torch.randint(5, VOCAB, (2, 6), generator=gen)
    input_ids = torch.cat([torch.full((2, N_IMAGE_TOKENS), PLACEHOLDER), text], dim=1)
    decoder_input_ids = torch.randint(5, VOCAB, (2, 5), generator=gen)
    with torch.no_grad():
        return model(input_ids=input_ids, pixel_values=pixel_values, decoder_input_ids=decoder_input_ids).logits


def _load(path) -> Florence2ForConditionalGeneration:
    return Florence2ForConditionalGeneration.from_pretrained(path).eval()


def _no_leftovers(parent, name):
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


# --- layout detection --------------------------------------------------------------------------------------

def test_detects_both_layouts_and_names_a_bad_config(tmp_path):
    assert detect_florence2_layout(write_tiny_florence2(tmp_path / "r", "remote", VOCAB)) == "remote"
    assert detect_florence2_layout(write_tiny_florence2(tmp_path / "n", "native", VOCAB)) == "native"
    published = tmp_path / "r" / "config.json"  # the hub's config.json has no text_config model_type
    config = json.loads(published.read_text())
    del config["text_config"]["model_type"]
    published.write_text(json.dumps(config))
    assert detect_florence2_layout(tmp_path / "r") == "remote"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty/config\.json: missing"):
        detect_florence2_layout(tmp_path / "empty")
    write_tiny_gemma2(tmp_path / "g", VOCAB, sharded=False)
    with pytest.raises(CheckpointError, match=r"g/config\.json: neither"):
        detect_florence2_layout(tmp_path / "g")


def test_fixture_uses_the_published_remote_names(tmp_path):
    names = set(load_file(write_tiny_florence2(tmp_path / "r", "remote", VOCAB) / "model.safetensors"))
    for name in ("vision_tower.convs.0.proj.weight", "vision_tower.convs.1.norm.bias",
                 "vision_tower.blocks.0.0.spatial_block.conv1.fn.dw.weight",
                 "vision_tower.blocks.0.0.spatial_block.window_attn.norm.weight",
                 "vision_tower.blocks.0.0.spatial_block.window_attn.fn.qkv.weight",
                 "vision_tower.blocks.1.0.channel_block.channel_attn.fn.proj.bias",
                 "vision_tower.blocks.1.0.channel_block.ffn.norm.weight",
                 "vision_tower.blocks.1.0.channel_block.ffn.fn.net.fc1.weight",
                 "vision_tower.blocks.1.0.channel_block.conv2.fn.dw.bias", "image_projection",
                 "image_proj_norm.weight", "image_pos_embed.row_embeddings.weight",
                 "image_pos_embed.column_embeddings.weight", "visual_temporal_embed.pos_idx_to_embed",
                 "language_model.model.shared.weight", "language_model.model.encoder.layers.0.fc1.weight",
                 "language_model.model.decoder.layers.0.encoder_attn.q_proj.bias",
                 "language_model.lm_head.weight", "language_model.final_logits_bias"):
        assert name in names, name
    assert not [n for n in names if n.startswith("model.")]


# --- (a) same logits ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("tied_aliases, shards", [(True, 1), (False, 3)])
def test_converted_remote_checkpoint_gives_the_native_logits(tmp_path, tied_aliases, shards):
    remote = write_tiny_florence2(tmp_path / "remote", "remote", VOCAB, tied_aliases=tied_aliases, shards=shards)
    native = write_tiny_florence2(tmp_path / "native", "native", VOCAB)
    stats = convert_florence2(str(remote), str(tmp_path / "out"))
    converted, reference = _load(tmp_path / "out"), _load(native)
    assert (_logits(converted) - _logits(reference)).abs().max().item() <= 1e-5
    n_remote = len(remote_state_dict(tiny_florence2(VOCAB), tied_aliases=tied_aliases))
    assert stats["layout"] == "remote" and stats["tensors"] == n_remote and stats["dtype"] == "float32"
    assert stats["parameters"] == sum(p.numel() for p in reference.parameters())
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["text_config"]["model_type"] == "bart" and config["vision_config"]["model_type"] == "florence_vision"
    assert config["image_token_id"] == VOCAB and "auto_map" not in config
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"config.json", "model.safetensors"}


def test_image_projection_keeps_the_remote_product(tmp_path):
    """The remote model computes x @ image_projection; the converted Linear must compute the same."""
    remote = write_tiny_florence2(tmp_path / "remote", "remote", VOCAB)
    convert_florence2(remote, tmp_path / "out")
    weight = load_file(remote / "model.safetensors")["image_projection"]
    projection = _load(tmp_path / "out").model.multi_modal_projector.image_projection
    x = torch.randn(5, weight.shape[0])
    with torch.no_grad():
        assert torch.allclose(projection(x), x @ weight, atol=1e-6)


def test_native_checkpoint_is_validated_and_written(tmp_path):
    native = write_tiny_florence2(tmp_path / "native", "native", VOCAB)
    stats = convert_florence2(native, tmp_path / "out")
    assert stats["layout"] == "native" and stats["tensors"] == len(load_file(native / "model.safetensors"))
    assert torch.equal(_logits(_load(tmp_path / "out")), _logits(_load(native)))
    state = load_file(native / "model.safetensors")
    state["model.vision_tower.stray.weight"] = torch.zeros(2)
    save_file(state, native / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"model\.vision_tower\.stray\.weight"):
        convert_florence2(native, tmp_path / "out2")


def test_published_large_config_converts_to_the_native_one(tmp_path):
    """The shapes of Florence-2-large's published config.json (microsoft/Florence-2-large) carry over."""
    config = remote_config(tiny_florence2(VOCAB), torch.float16)
    config["text_config"].update(vocab_size=51289, d_model=1024, encoder_layers=12, decoder_layers=12,
                                 encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                                 decoder_ffn_dim=4096, max_position_embeddings=4096, dropout=0.1,
                                 attention_dropout=0.1, activation_dropout=0.1)
    config["vision_config"].update(dim_embed=[256, 512, 1024, 2048], num_heads=[8, 16, 32, 64],
                                   num_groups=[8, 16, 32, 64], depths=[1, 1, 9, 1], window_size=12,
                                   projection_dim=1024, patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2],
                                   patch_padding=[3, 1, 1, 1], patch_prenorm=[False, True, True, True])
    native = convert._native_config(config, tmp_path / "config.json")
    assert native.vision_config.embed_dim == [256, 512, 1024, 2048] and native.vision_config.projection_dim == 1024
    assert native.text_config.d_model == 1024 and native.text_config.max_position_embeddings == 4096
    assert native.text_config.dropout == 0.1 and native.image_token_id == 51289
    with torch.device("meta"):
        n = sum(p.numel() for p in Florence2ForConditionalGeneration(native).parameters())
    assert 0.75e9 < n < 0.80e9  # Florence-2-large: 0.77B


def test_unsupported_remote_options_are_refused(tmp_path):
    model = tiny_florence2(VOCAB)
    config = remote_config(model, torch.float32)
    config["vision_config"]["image_feature_source"] = ["temporal_avg_pool"]
    write_remote_checkpoint(tmp_path / "r", config, remote_state_dict(model))
    with pytest.raises(CheckpointError, match=r"r/config\.json: image_feature_source"):
        convert_florence2(tmp_path / "r", tmp_path / "out")
    config = remote_config(model, torch.float32)
    del config["vision_config"]["num_heads"]  # the remote default (8, 16, 32, 64) is not the native one
    write_remote_checkpoint(tmp_path / "r2", config, remote_state_dict(model))
    with pytest.raises(CheckpointError, match=r"r2/config\.json: lacks vision_config\.num_heads"):
        convert_florence2(tmp_path / "r2", tmp_path / "out")


# --- (b) every tensor used ---------------------------------------------------------------------------------

def _remote_with(tmp_path, edit) -> object:
    model = tiny_florence2(VOCAB)
    state = remote_state_dict(model)
    edit(state)
    return write_remote_checkpoint(tmp_path / "remote", remote_config(model, torch.float32), state)


def test_an_extra_remote_tensor_is_named(tmp_path):
    src = _remote_with(tmp_path, lambda s: s.update({"vision_tower.blocks.0.0.spatial_block.extra.weight":
                                                     torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"without a slot.*vision_tower\.blocks\.0\.0\.spatial_block\.extra"):
        convert_florence2(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["vision_tower.convs.0.proj.weight", "image_projection",
                                  "vision_tower.blocks.1.0.spatial_block.window_attn.norm.bias",
                                  "language_model.model.decoder.layers.0.fc2.bias"])
def test_a_missing_remote_tensor_is_named(tmp_path, name):
    src = _remote_with(tmp_path, lambda s: s.pop(name))
    with pytest.raises(CheckpointError, match=rf"lacks: \[.*'{name.replace('.', '[.]')} \(native "):
        convert_florence2(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_wrongly_shaped_tensor_is_named(tmp_path):
    src = _remote_with(tmp_path, lambda s: s.update(image_projection=s["image_projection"].t().contiguous()))
    with pytest.raises(CheckpointError, match=r"shapes.*image_projection"):
        convert_florence2(src, tmp_path / "out")


def test_nonzero_logits_bias_and_untied_head_are_refused(tmp_path):
    src = _remote_with(tmp_path, lambda s: s["language_model.final_logits_bias"].add_(1.0))
    with pytest.raises(CheckpointError, match=r"language_model\.final_logits_bias is not zero"):
        convert_florence2(src, tmp_path / "out")
    src = _remote_with(tmp_path / "b", lambda s: s["language_model.lm_head.weight"].add_(1.0))
    with pytest.raises(CheckpointError, match=r"language_model\.lm_head\.weight differs"):
        convert_florence2(src, tmp_path / "out")


# --- (c) dtype ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["remote", "native"])
def test_bf16_source_stays_bf16(tmp_path, layout):
    src = write_tiny_florence2(tmp_path / "src", layout, VOCAB, dtype=torch.bfloat16)
    stats = convert_florence2(src, tmp_path / "out")
    assert stats["dtype"] == "bfloat16"
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"


# --- (d) pickles refused -----------------------------------------------------------------------------------

def test_pytorch_model_bin_only_is_refused_naming_the_file(tmp_path):
    src = write_tiny_florence2(tmp_path / "src", "remote", VOCAB)
    torch.save(load_file(src / "model.safetensors"), src / "pytorch_model.bin")
    (src / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"src/pytorch_model\.bin: pickled.*convert it to safetensors"):
        convert_florence2(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- (e) Gemma-2 -------------------------------------------------------------------------------------------

def _gemma_checkpoint(path, sharded=True):
    write_tiny_gemma2(path, VOCAB, sharded=sharded)
    vocab = {f"t{i}": i for i in range(VOCAB)}
    Tokenizer(models.WordLevel(vocab, unk_token="t3")).save(str(path / "tokenizer.json"))
    return path


def test_import_gemma2_links_a_sharded_checkpoint_that_loads_to_the_same_logits(tmp_path):
    src = _gemma_checkpoint(tmp_path / "gemma")
    stats = import_gemma2(str(src), str(tmp_path / "out"))
    assert stats["shards"] >= 2 and stats["dtype"] == "float32"
    assert stats["parameters"] == sum(p.numel() for p in tiny_gemma2(VOCAB).parameters())
    out_files = sorted((tmp_path / "out").iterdir())
    assert out_files and all(p.is_symlink() for p in out_files)
    assert {"config.json", "tokenizer.json", "model.safetensors.index.json"} <= {p.name for p in out_files}
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = Gemma2ForCausalLM.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()(ids).logits
        want = tiny_gemma2(VOCAB)(ids).logits
    assert torch.equal(got, want)


def test_import_gemma2_names_what_is_wrong(tmp_path):
    src = _gemma_checkpoint(tmp_path / "gemma")
    shard = sorted(src.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"index\.json: names shard\(s\) that are missing: {shard.name}"):
        import_gemma2(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    src = _gemma_checkpoint(tmp_path / "g2", sharded=False)
    (src / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"g2/tokenizer\.json: missing"):
        import_gemma2(src, tmp_path / "out")
    florence = write_tiny_florence2(tmp_path / "f", "native", VOCAB)
    with pytest.raises(CheckpointError, match=r"f/config\.json: model_type is 'florence2'"):
        import_gemma2(florence, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- (f) atomic output -------------------------------------------------------------------------------------

def test_a_conversion_killed_while_writing_leaves_no_out_dir(tmp_path, monkeypatch):
    src = write_tiny_florence2(tmp_path / "src", "remote", VOCAB)

    def dies_half_way(self, path, **kwargs):
        (path / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Florence2ForConditionalGeneration, "save_pretrained", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        convert_florence2(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not _no_leftovers(tmp_path, "out")


def test_a_failed_conversion_keeps_the_old_out_dir_and_a_good_one_replaces_it(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("old")
    src = _remote_with(tmp_path, lambda s: s.pop("image_proj_norm.bias"))
    with pytest.raises(CheckpointError):
        convert_florence2(src, tmp_path / "out")
    assert (tmp_path / "out" / "old").exists() and not _no_leftovers(tmp_path, "out")
    convert_florence2(write_tiny_florence2(tmp_path / "good", "remote", VOCAB), tmp_path / "out")
    assert not (tmp_path / "out" / "old").exists() and (tmp_path / "out" / "model.safetensors").is_file()
    assert not _no_leftovers(tmp_path, "out")


def test_tokenizer_files_are_copied(tmp_path):
    src = write_tiny_florence2(tmp_path / "src", "remote", VOCAB)
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        (src / name).write_text(f"{{\"name\": \"{name}\"}}")
    stats = convert_florence2(src, tmp_path / "out")
    assert stats["tokenizer_files"] == ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"]
    assert (tmp_path / "out" / "vocab.json").read_text() == (src / "vocab.json").read_text()
