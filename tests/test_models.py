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
