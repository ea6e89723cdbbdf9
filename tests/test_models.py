import pytest
import torch

from florenz_lib.models.configs import num_image_tokens
from florenz_lib.models.counting import forward_macs
from florenz_lib.models.florenz import DECODER_BOS, DECODER_EOS, DECODER_START, load_florenz, save_florenz
from florenz_lib.models.freezing import apply_freezing_policy, count_parameters
from florenz_lib.models.fvt import fast_vocabulary_transfer
from florenz_lib.models.inputs import Example, Seq2SeqCollator
from florenz_lib.models.loss import IGNORE_INDEX, per_sample_ce
from florenz_lib.models.restructure import florenz_from_florence2, florenz_from_florence2_and_gemma2

IMAGE_SIZE = 32


def _batch(model, tokenizers, n=2):
    encoder_tok, decoder_tok = tokenizers
    collate = Seq2SeqCollator(encoder_tok, decoder_tok,
                              num_image_tokens(model.config.florence2_config().vision_config, IMAGE_SIZE),
                              max_prompt_tokens=24, max_target_tokens=16, decoder_start_id=DECODER_START)
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=gen)
    examples = [Example(images[0], "caption", "es", "", "una pequeña estrella verde"),
                Example(images[1], "translation", "zh", "two red circles", "两个红色的圆形")][:n]
    return collate(examples)


def _logits(model, batch):
    return model(batch["input_ids"], batch["attention_mask"], batch["pixel_values"], batch["decoder_input_ids"],
                 batch["decoder_attention_mask"]).logits


def test_fresh_gemma_family_model_equals_plain_gemma_lm(base_models, tokenizers):
    florence, gemma = base_models
    model = florenz_from_florence2_and_gemma2(florence, gemma).eval()
    batch = _batch(model, tokenizers)
    with torch.no_grad():
        ours = _logits(model, batch)
        plain = gemma(input_ids=batch["decoder_input_ids"], attention_mask=batch["decoder_attention_mask"]).logits
    mask = batch["decoder_attention_mask"].bool()
    torch.testing.assert_close(ours[mask], plain[mask], rtol=1e-5, atol=1e-5)
    # an open gate makes the image matter: the output is no longer the plain LM's
    for layer in model.decoder.layers:
        layer.encoder_attn_gate.data.fill_(1.0)
    with torch.no_grad():
        assert not torch.allclose(_logits(model, batch)[mask], plain[mask], atol=1e-4)


def test_new_norm_starts_as_copy_of_post_attention_norm(base_models):
    florence, gemma = base_models
    with torch.no_grad():
        for layer in gemma.model.layers:
            layer.post_attention_layernorm.weight.normal_()
    model = florenz_from_florence2_and_gemma2(florence, gemma)
    for ours, theirs in zip(model.decoder.layers, gemma.model.layers):
        torch.testing.assert_close(ours.post_encoder_attention_layernorm.weight, theirs.post_attention_layernorm.weight)
        assert ours.encoder_attn_gate.item() == 0.0


def test_fvt_row_is_mean_of_encoder_pieces_and_specials_map_directly(tokenizers):
    encoder_tok, decoder_tok = tokenizers
    old = torch.randn(encoder_tok.get_vocab_size(), 8)
    special_map = {0: 1, 1: 2, 2: 0}
    new = fast_vocabulary_transfer(old, encoder_tok, decoder_tok, special_map)
    assert new.shape == (decoder_tok.get_vocab_size(), 8)
    for new_id, old_id in special_map.items():
        torch.testing.assert_close(new[new_id], old[old_id])
    word_id = decoder_tok.token_to_id("\u2581circles")
    pieces = encoder_tok.encode(" circles", add_special_tokens=False).ids
    torch.testing.assert_close(new[word_id], old[pieces].mean(0))


def test_florence_family_restructure_ties_fvt_embeddings_and_lm_head(base_models, tokenizers):
    florence, _ = base_models
    model = florenz_from_florence2(florence, *tokenizers)
    assert model.lm_head.weight is model.decoder.embed_tokens.weight
    assert model.lm_head.weight.shape[0] == tokenizers[1].get_vocab_size()
    torch.testing.assert_close(model.decoder.layers[0].fc1.weight,
                               florence.model.language_model.decoder.layers[0].fc1.weight)
    logits = _logits(model, _batch(model, tokenizers))
    assert logits.abs().max() <= 30.0  # final-logit softcap


def test_freezing_policy_by_family(base_models, tokenizers):
    florence, gemma = base_models
    for model in (florenz_from_florence2(florence, *tokenizers), florenz_from_florence2_and_gemma2(florence, gemma)):
        apply_freezing_policy(model)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert not any(n.startswith(("vision_tower", "multi_modal_projector")) for n in trainable)
        assert all(p.requires_grad for p in model.encoder.parameters())
        decoder = {n for n in trainable if n.startswith("decoder.")}
        if model.config.family == "florence":
            assert decoder == {f"decoder.{n}" for n, _ in model.decoder.named_parameters()}
        else:
            assert decoder and all(("encoder_attn" in n or "post_encoder_attention" in n or "embed_tokens" in n)
                                   for n in decoder)
            assert not any("mlp" in n or "self_attn" in n for n in decoder)
        total, n_trainable = count_parameters(model)
        assert 0 < n_trainable < total
        assert n_trainable == sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)


def test_save_and_load_round_trip_gives_identical_outputs(base_models, tokenizers, tmp_path):
    florence, gemma = base_models
    model = florenz_from_florence2_and_gemma2(florence, gemma).eval()
    save_florenz(model, str(tmp_path))
    loaded = load_florenz(str(tmp_path)).eval()
    assert loaded.lm_head.weight is loaded.decoder.embed_tokens.weight
    batch = _batch(model, tokenizers)
    with torch.no_grad():
        torch.testing.assert_close(_logits(loaded, batch), _logits(model, batch))


def test_collator_shifts_labels_behind_decoder_start(base_models, tokenizers):
    florence, _ = base_models
    model = florenz_from_florence2(florence, *tokenizers)
    batch = _batch(model, tokenizers)
    n_image = num_image_tokens(model.config.florence2_config().vision_config, IMAGE_SIZE)
    assert (batch["input_ids"][:, :n_image] == model.image_token_id).all()
    assert (batch["decoder_input_ids"][:, 0] == DECODER_START).all()
    labels, decoder_in = batch["labels"], batch["decoder_input_ids"]
    valid = labels[:, 1:] != IGNORE_INDEX  # decoder position t+1 reads label t while label t+1 exists
    assert (decoder_in[:, 1:][valid] == labels[:, :-1][valid]).all()
    assert (labels[:, 0] == tokenizers[1].token_to_id("<bos>")).all()


def test_per_sample_ce_ignores_padding():
    logits = torch.zeros(2, 3, 4)
    logits[0, 0, 1] = 10.0
    labels = torch.tensor([[1, IGNORE_INDEX, IGNORE_INDEX], [0, 1, 2]])
    ce = per_sample_ce(logits, labels)
    assert ce[0] < 0.01
    torch.testing.assert_close(ce[1], torch.log(torch.tensor(4.0)))


def test_forward_macs_grow_with_decoder_length(base_models, tokenizers):
    florence, gemma = base_models
    model = florenz_from_florence2_and_gemma2(florence, gemma)
    short, long = forward_macs(model, IMAGE_SIZE, 8, 8), forward_macs(model, IMAGE_SIZE, 8, 16)
    assert 0 < short < long
    # the LM head alone costs hidden x vocab MACs per decoder token
    hidden, vocab = model.lm_head.in_features, model.lm_head.out_features
    assert long - short > 8 * hidden * vocab


def test_from_pretrained_of_saved_directory_gives_identical_logits(base_models, tokenizers, tmp_path):
    from florenz_lib.models.florenz import FlorenzForConditionalGeneration
    model = florenz_from_florence2(base_models[0], *tokenizers).eval()
    model.save_pretrained(tmp_path)
    loaded = FlorenzForConditionalGeneration.from_pretrained(tmp_path).eval()
    batch = _batch(model, tokenizers)
    with torch.no_grad():
        torch.testing.assert_close(_logits(loaded, batch), _logits(model, batch), rtol=0, atol=0)


def test_checkpoint_that_does_not_fit_its_config_names_path_and_tensor(base_models, tmp_path):
    import json

    import pytest
    florence, gemma = base_models
    save_florenz(florenz_from_florence2_and_gemma2(florence, gemma), str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["gemma2"]["intermediate_size"] += 8
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as error:
        load_florenz(str(tmp_path))
    assert str(tmp_path) in str(error.value) and "mlp.gate_proj.weight" in str(error.value)


def test_missing_base_checkpoint_names_the_path(tmp_path, tokenizers):
    import pytest

    from florenz_lib.models.stages import restructure
    missing = tmp_path / "no-such-florence"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        restructure("florence", str(missing), None, str(tmp_path), str(tmp_path / "out"))


@pytest.mark.parametrize("family", ["florence", "gemma"])
def test_generation_with_cache_matches_teacher_forcing(base_models, tokenizers, family):
    """Greedy decoding with the decoder's cache picks, at every step but the forced first (bos) and last
    (eos at the length limit), the argmax of a full forward pass over the tokens generated so far."""
    florence, gemma = base_models
    model = (florenz_from_florence2(florence, *tokenizers) if family == "florence"
             else florenz_from_florence2_and_gemma2(florence, gemma)).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.decoder.parameters():  # a random decoder emits varied tokens
            p.add_(torch.randn_like(p) * 0.5)
    batch = _batch(model, tokenizers)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    with torch.no_grad():
        greedy = model.generate(**inputs, max_new_tokens=6, do_sample=False, num_beams=1, min_new_tokens=6)
        assert greedy.shape[1] == 7 and (greedy[:, 0] == DECODER_START).all()
        assert (greedy[:, 1] == DECODER_BOS).all() and (greedy[:, -1] == DECODER_EOS).all()
        logits = model(**inputs, decoder_input_ids=greedy[:, :-1]).logits
        assert (logits.argmax(-1)[:, 1:-1] == greedy[:, 2:-1]).all()
        beams = model.generate(**inputs, max_new_tokens=6)  # the paper's beam search (generation_config)
    assert model.generation_config.num_beams == 4 and (beams[:, :2] == greedy[:, :2]).all()


def test_a_checkpoint_without_generation_config_still_decodes_as_the_paper(base_models, tmp_path):
    torch.manual_seed(0)
    save_florenz(florenz_from_florence2_and_gemma2(*base_models), str(tmp_path))
    (tmp_path / "generation_config.json").unlink()  # as a checkpoint written by other tools may lack it
    config = load_florenz(str(tmp_path)).generation_config
    assert (config.decoder_start_token_id, config.bos_token_id, config.eos_token_id) == (DECODER_START, DECODER_BOS,
                                                                                         DECODER_EOS)
    assert config.forced_bos_token_id == DECODER_BOS and config.num_beams == 4


# ---------------------------------------------------------------------------------------------------------
# The cc12m world's path: published-format tokenizers, native base checkpoints, surgery on the meta device.

import re  # noqa: E402

from conftest import TINY_FLORENCE, TINY_GEMMA  # noqa: E402
from tokenizer_fixtures import write_florence2_tokenizer, write_gemma2_tokenizer  # noqa: E402


def _gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet, as its tokenizer's source defines it."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def reference_fvt(old, old_tok, new_tok, special_map):
    """FVT token by token, as the definition reads (DESIGN.md section 5, byte-fallback tokens as bytes)."""
    alphabet, unk, rows = _gpt2_bytes_to_unicode(), old_tok.token_to_id("<unk>"), []
    for new_id in range(new_tok.get_vocab_size()):
        if new_id in special_map:
            rows.append(old[special_map[new_id]])
            continue
        token = new_tok.id_to_token(new_id)
        byte = re.fullmatch(r"<0x([0-9A-F]{2})>", token)
        if byte and int(byte.group(1), 16) >= 0x80:
            ids = [old_tok.token_to_id(alphabet[int(byte.group(1), 16)])]
        else:
            text = chr(int(byte.group(1), 16)) if byte else token.replace("\u2581", " ")
            ids = old_tok.encode(text, add_special_tokens=False).ids or [unk]
        rows.append(old[ids].mean(0))
    return torch.stack(rows)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Tokenizers in the published formats, prepared as the cc12m world's tokenizers rule does, and tiny
    native base checkpoints saved with save_pretrained: a float32 Florence-2 whose encoder has a row per
    token of its tokenizer (no row for <image>, as the real one), a bfloat16 Gemma-2 in shards."""
    from transformers import Florence2ForConditionalGeneration, Gemma2ForCausalLM

    from florenz_lib.models.configs import florence2_config, gemma2_config
    from florenz_lib.models.tokenizers import load_tokenizer, prepare_tokenizers
    root = tmp_path_factory.mktemp("published")
    florence_json, florence_size = write_florence2_tokenizer(root / "florence2-tokenizer")
    gemma_json, gemma_size = write_gemma2_tokenizer(root / "gemma2-tokenizer")
    stats = prepare_tokenizers(florence_json, gemma_json, str(root / "tokenizers"))
    torch.manual_seed(0)
    config = florence2_config(TINY_FLORENCE, florence_size)
    config.image_token_id = florence_size  # transformers' Florence-2 default, 51289, is its vocabulary size too
    Florence2ForConditionalGeneration(config).save_pretrained(root / "florence2")
    gemma = Gemma2ForCausalLM(gemma2_config(TINY_GEMMA, gemma_size)).to(torch.bfloat16)
    gemma.save_pretrained(root / "gemma2", max_shard_size="20KB")
    assert (root / "gemma2" / "model.safetensors.index.json").exists()
    return {"root": root, "stats": stats, "florence_rows": florence_size, "gemma_size": gemma_size,
            "encoder": load_tokenizer(str(root / "tokenizers" / "encoder.json")),
            "decoder": load_tokenizer(str(root / "tokenizers" / "decoder.json"))}


def _checkpoint(model_dir):
    import json

    from safetensors.torch import load_file
    index = model_dir / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists()
             else ["model.safetensors"])
    return {k: v for f in files for k, v in load_file(model_dir / f).items()}


def _restructured(published, family, seed=0):
    from florenz_lib.models.stages import restructure
    root = published["root"]
    out = root / f"restructured-{family}-{seed}"
    if not out.exists():
        restructure(family, str(root / "florence2"), str(root / "gemma2") if family == "gemma" else None,
                    str(root / "tokenizers"), str(out), seed=seed)
    return out


def _published_batch(model, published):
    collate = Seq2SeqCollator(published["encoder"], published["decoder"],
                              num_image_tokens(model.config.florence2_config().vision_config, IMAGE_SIZE),
                              max_prompt_tokens=24, max_target_tokens=16, decoder_start_id=DECODER_START)
    images = torch.randint(0, 256, (2, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    return collate([Example(images[0], "caption", "es", "", "una mujer joven \U0001F642"),
                    Example(images[1], "translation", "zh", "two children", "两个孩子")])


def test_fvt_equals_the_token_by_token_definition_on_published_formats(published):
    encoder_tok, decoder_tok = published["encoder"], published["decoder"]
    old = torch.randn(encoder_tok.get_vocab_size(), 8, generator=torch.Generator().manual_seed(0))
    special_map = {0: 1, 1: 2, 2: 0, 3: 3}
    new = fast_vocabulary_transfer(old, encoder_tok, decoder_tok, special_map)
    assert torch.equal(new, reference_fvt(old, encoder_tok, decoder_tok, special_map))  # bit for bit
    # byte-fallback tokens: an ASCII byte is its character, another byte the old tokenizer's token for it
    assert torch.equal(new[decoder_tok.token_to_id("<0x41>")], old[encoder_tok.token_to_id("A")])
    assert torch.equal(new[decoder_tok.token_to_id("<0xC3>")], old[encoder_tok.token_to_id("\u00c3")])
    word = decoder_tok.token_to_id("\u2581mujer")
    torch.testing.assert_close(new[word], old[encoder_tok.encode(" mujer", add_special_tokens=False).ids].mean(0))


def test_fvt_keeps_the_old_embeddings_dtype_and_the_world_definition(tokenizers):
    encoder_tok, decoder_tok = tokenizers
    old = torch.randn(encoder_tok.get_vocab_size(), 8).to(torch.bfloat16)
    special_map = {0: 1, 1: 2, 2: 0}
    new = fast_vocabulary_transfer(old, encoder_tok, decoder_tok, special_map)
    assert new.dtype == torch.bfloat16
    reference = reference_fvt(old.float(), encoder_tok, decoder_tok, special_map).to(torch.bfloat16)
    assert torch.equal(new, reference)


def test_the_byte_level_alphabet_is_the_tokenizers_one():
    from tokenizers import pre_tokenizers

    from florenz_lib.models.fvt import _byte_level_alphabet
    alphabet = _byte_level_alphabet()
    assert alphabet == _gpt2_bytes_to_unicode()
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    for text in ["A", "\n", "é", "ß", "два", "两个", "\U0001F642"]:
        assert byte_level.pre_tokenize_str(text)[0][0] == "".join(alphabet[b] for b in text.encode()), text


def test_gemma_restructure_from_native_bases_with_published_tokenizers(published):
    from florenz_lib.models.restructure import EMBEDDING_ROW_MULTIPLE
    out = _restructured(published, "gemma")
    saved, florence, gemma = _checkpoint(out), _checkpoint(published["root"] / "florence2"), \
        _checkpoint(published["root"] / "gemma2")
    # the encoder has a row for <image>: grown to a multiple of 64, the new rows the mean of the old ones
    image_id, rows = published["stats"]["image_token_id"], published["florence_rows"]
    embedding, shared = saved["encoder.embed_tokens.weight"], florence["model.language_model.shared.weight"]
    assert image_id == rows and embedding.shape[0] == 1664 and embedding.shape[0] % EMBEDDING_ROW_MULTIPLE == 0
    assert torch.equal(embedding[:rows], shared)
    assert torch.equal(embedding[rows:], shared.mean(0).expand(embedding.shape[0] - rows, -1))
    # the frozen Gemma-2 weights are the source's, bit for bit and still bfloat16; the new layers bfloat16 too
    gemma_keys = [k for k in gemma if k.startswith("model.")]
    assert gemma_keys
    for key in gemma_keys:
        ours = saved[key.replace("model.", "decoder.", 1)]
        assert ours.dtype == torch.bfloat16 and torch.equal(ours, gemma[key]), key
    for i in range(TINY_GEMMA["num_hidden_layers"]):
        layer = f"decoder.layers.{i}."
        assert saved[layer + "encoder_attn.q_proj.weight"].dtype == torch.bfloat16
        assert torch.equal(saved[layer + "post_encoder_attention_layernorm.weight"],
                           gemma[f"model.layers.{i}.post_attention_layernorm.weight"])
        assert saved[layer + "encoder_attn_gate"].item() == 0.0
    for key, value in florence.items():  # vision tower and projector: the source's
        if key.startswith(("model.vision_tower.", "model.multi_modal_projector.")):
            assert torch.equal(saved[key.replace("model.", "", 1)], value), key
    model = load_florenz(str(out)).eval()
    assert model.image_token_id == image_id and model.config.florence2["image_token_id"] == image_id
    assert model.encoder.embed_tokens.num_embeddings == 1664
    batch = _published_batch(model, published)
    assert (batch["input_ids"] == image_id).sum() == 2 * num_image_tokens(
        model.config.florence2_config().vision_config, IMAGE_SIZE)
    with torch.no_grad():
        logits = _logits(model, batch)
    assert logits.shape[-1] == published["gemma_size"] and torch.isfinite(logits).all()
    # the gate is shut: the decoder computes what the plain Gemma-2 LM computes
    from transformers import Gemma2ForCausalLM
    plain = Gemma2ForCausalLM.from_pretrained(published["root"] / "gemma2", dtype=torch.float32).eval()
    with torch.no_grad():
        expected = plain(input_ids=batch["decoder_input_ids"], attention_mask=batch["decoder_attention_mask"]).logits
    mask = batch["decoder_attention_mask"].bool()
    torch.testing.assert_close(logits[mask], expected[mask], rtol=1e-5, atol=1e-5)


def test_florence_restructure_from_a_native_base_with_published_tokenizers(published):
    out = _restructured(published, "florence")
    saved, florence = _checkpoint(out), _checkpoint(published["root"] / "florence2")
    encoder_tok, decoder_tok = published["encoder"], published["decoder"]
    embedding = saved["encoder.embed_tokens.weight"]
    assert embedding.shape[0] == 1664
    special_map = {0: 1, 1: 2, 2: 0, 3: encoder_tok.token_to_id("<unk>")}
    assert torch.equal(saved["decoder.embed_tokens.weight"], reference_fvt(embedding, encoder_tok, decoder_tok,
                                                                           special_map))
    assert torch.equal(saved["decoder.layers.0.fc1.weight"],
                       florence["model.language_model.decoder.layers.0.fc1.weight"])
    model = load_florenz(str(out)).eval()
    assert model.lm_head.weight is model.decoder.embed_tokens.weight
    with torch.no_grad():
        logits = _logits(model, _published_batch(model, published))
    assert logits.shape[-1] == decoder_tok.get_vocab_size() and torch.isfinite(logits).all()


def test_the_same_seed_gives_the_same_model_and_another_seed_other_new_layers(published):
    dirs = [_restructured(published, "gemma", seed) for seed in (3, 3, 4)]
    first, again, other = ((d / "model.safetensors").read_bytes() for d in dirs)
    assert first == again  # the saved model, bit for bit
    assert first != other
    first, other = _checkpoint(dirs[0]), _checkpoint(dirs[2])
    new = {k for k in first if ".encoder_attn." in k}
    assert len(new) == 4 * TINY_GEMMA["num_hidden_layers"]
    assert all(not torch.equal(first[k], other[k]) for k in new)  # every projection is drawn from the seed
    assert all(torch.equal(first[k], other[k]) for k in first.keys() - new)  # nothing else is


def test_surgery_draws_from_its_own_generator_and_leaves_the_global_rng_alone(base_models):
    florence, gemma = base_models
    torch.manual_seed(11)
    state = torch.get_rng_state()
    first = florenz_from_florence2_and_gemma2(florence, gemma, seed=5).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(12)  # another global RNG state: the same model
    again = florenz_from_florence2_and_gemma2(florence, gemma, seed=5).state_dict()
    other = florenz_from_florence2_and_gemma2(florence, gemma, seed=6).state_dict()
    assert first.keys() == again.keys() == other.keys()
    assert [k for k in first if not torch.equal(first[k], again[k])] == []
    changed = {k for k in first if not torch.equal(first[k], other[k])}
    assert changed == {k for k in first if ".encoder_attn." in k} and changed
    source = gemma.model.state_dict()
    assert all(torch.equal(first[f"decoder.{k}"], v) for k, v in source.items())  # frozen Gemma-2: the source's


def test_new_cross_attention_starts_with_std_002_and_closed_gates(base_models):
    from florenz_lib.models.paper import build_paper_model
    from florenz_lib.models.restructure import draw_cross_attention
    florence, gemma = base_models
    model = florenz_from_florence2_and_gemma2(florence, gemma)
    weights = torch.cat([p.detach().flatten() for n, p in model.named_parameters() if ".encoder_attn." in n])
    assert weights.numel() > 4000 and abs(weights.std().item() - 0.02) < 0.002 and abs(weights.mean()) < 0.002
    assert all(layer.encoder_attn_gate.item() == 0.0 for layer in model.decoder.layers)
    # a layer of the paper's 3.5B decoder: every projection's own std, in the dtype asked for
    decoder = build_paper_model("3.5B").decoder
    decoder.layers = decoder.layers[:1]
    values = draw_cross_attention(decoder, 0, torch.bfloat16)
    assert sorted(values) == [f"layers.0.encoder_attn.{p}_proj.weight" for p in "koqv"]
    for name, value in values.items():
        assert value.dtype == torch.bfloat16 and value.shape == decoder.get_parameter(name).shape
        assert abs(value.float().std().item() - 0.02) < 2e-4, name


def test_surgery_takes_the_bases_tensors_without_copies_only_when_asked(base_models, tokenizers):
    from transformers import Florence2ForConditionalGeneration, Gemma2ForCausalLM
    florence, gemma = base_models
    base_storage = {t.untyped_storage().data_ptr() for m in base_models for t in m.state_dict().values()}
    copied = florenz_from_florence2_and_gemma2(florence, gemma)
    assert not any(t.untyped_storage().data_ptr() in base_storage for t in copied.state_dict().values())
    # a private copy of the bases, whose tensors the model may take
    f2 = Florence2ForConditionalGeneration(florence.config).eval()
    f2.load_state_dict(florence.state_dict())
    g2 = Gemma2ForCausalLM(gemma.config).eval()
    g2.load_state_dict(gemma.state_dict())
    taken = florenz_from_florence2_and_gemma2(f2, g2, clone=False)
    assert taken.decoder.layers[0].mlp.up_proj.weight.data_ptr() == g2.model.layers[0].mlp.up_proj.weight.data_ptr()
    assert taken.vision_tower.state_dict()["convs.0.conv.weight"].data_ptr() == \
        f2.model.vision_tower.state_dict()["convs.0.conv.weight"].data_ptr()
    assert not [n for n, t in list(taken.named_parameters()) + list(taken.named_buffers()) if t.is_meta]


def test_a_decoder_tokenizer_past_the_gemma_rows_is_refused(published, tmp_path):
    import shutil

    from florenz_lib.models.stages import restructure
    from florenz_lib.models.tokenizers import save_tokenizer, train_decoder_tokenizer
    shutil.copytree(published["root"] / "tokenizers", tmp_path / "tokenizers")
    big = train_decoder_tokenizer(["a b c"] * 2, 10)
    big.add_tokens([f"extra{i}" for i in range(published["gemma_size"])])
    save_tokenizer(big, str(tmp_path / "tokenizers" / "decoder.json"))
    with pytest.raises(ValueError, match="decoder.json"):
        restructure("gemma", str(published["root"] / "florence2"), str(published["root"] / "gemma2"),
                    str(tmp_path / "tokenizers"), str(tmp_path / "out"))
