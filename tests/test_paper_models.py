"""The Florenz family at the paper's sizes, on the meta device (P, Pt, F without any weights)."""
import pytest
import torch

from conftest import TINY_FLORENCE, TINY_GEMMA

from florenz_lib.models.configs import florence2_config, gemma2_config
from florenz_lib.models.counting import forward_macs
from florenz_lib.models.florenz import FlorenzForConditionalGeneration, FlorenzConfig
from florenz_lib.models.paper import (PAPER_SIZES, PAPER_TABLE_COLUMNS, parameter_count, build_paper_model,
                                      paper_model_table)

PAPER_P = {"0.4B": 0.4, "1.0B": 1.0, "3.5B": 3.5, "11.2B": 11.2}


@pytest.fixture(scope="module")
def table():
    return paper_model_table().set_index("model", drop=False)


def test_table_has_the_contract_columns_and_one_row_per_size(table):
    assert list(table.columns) == PAPER_TABLE_COLUMNS
    assert list(table["model"]) == list(PAPER_SIZES)
    assert list(table["family"]) == ["florence", "florence", "gemma", "gemma"]


def test_parameter_counts_round_to_the_paper_sizes(table):
    for name, size in PAPER_P.items():
        p = int(table.loc[name, "P"])
        assert round(p / 1e9, 1) == size, (name, parameter_count(p))
    assert parameter_count(int(table.loc["0.4B", "P"])) == "0.43B"


def test_trainable_parameters_follow_the_freezing_policy(table):
    assert (table["Pt"] < table["P"]).all() and (table["Pt"] > 0).all()
    share = table["Pt"] / table["P"]
    # Gemma decoders train only cross attention, its gate and norm, and the (tied) embeddings.
    assert (share[table["family"] == "gemma"] < 0.35).all()
    assert share["11.2B"] < share["3.5B"]
    # Florence family: only the vision tower and projector are frozen.
    assert (share[table["family"] == "florence"] > 0.6).all()


def test_vocabularies_follow_the_reference_configs(table):
    # The authors' Gemma variants have 51289 encoder rows, no row for the <image> placeholder (id 51289, which
    # they do not use); here every size has the Florence-2 variants' 51328, the least multiple of 64 with
    # one. That adds 39 x 1024 = 39,936 (trainable) parameters to 3.5B and 11.2B: P 3,485,001,498 ->
    # 3,485,041,434 and 11,221,849,642 -> 11,221,889,578, the same printed sizes (3.49B, 11.22B).
    assert list(table["encoder_vocab"]) == [51328, 51328, 51328, 51328]
    assert list(table["decoder_vocab"]) == [257024, 257024, 256000, 256000]


def test_every_size_has_an_encoder_row_for_its_image_token():
    for name in PAPER_SIZES:
        model = build_paper_model(name)
        assert model.image_token_id < model.encoder.embed_tokens.num_embeddings, name
        assert model.encoder.embed_tokens.num_embeddings % 64 == 0, name


def test_forward_macs_grow_with_size(table):
    macs = [int(table.loc[name, "F"]) for name in PAPER_SIZES]
    assert all(a < b for a, b in zip(macs, macs[1:])), macs
    # At least one multiply-add per parameter per decoder token, roughly, for the decoder-heavy sizes.
    assert macs[-1] > 128 * 9e9


def test_building_allocates_no_storage():
    model = build_paper_model("11.2B")
    tensors = list(model.parameters()) + list(model.buffers())
    assert tensors and all(t.is_meta for t in tensors)
    assert model.lm_head.weight is model.decoder.embed_tokens.weight
    assert isinstance(model, FlorenzForConditionalGeneration) and not model.training


def test_unknown_size_is_refused():
    with pytest.raises(ValueError, match="unknown paper model"):
        build_paper_model("7B")


@pytest.mark.parametrize("family", ["florence", "gemma"])
def test_meta_count_equals_the_count_on_real_tensors(family):
    florence = florence2_config(TINY_FLORENCE, 300).to_dict()
    config = FlorenzConfig(family=family, florence2=florence, decoder_vocab_size=320,
                       gemma2=gemma2_config(TINY_GEMMA, 320).to_dict() if family == "gemma" else None)
    real = FlorenzForConditionalGeneration(config)
    with torch.device("meta"):
        meta = FlorenzForConditionalGeneration(config)
    args = (32, 7, 9)
    assert forward_macs(meta, *args) == forward_macs(real, *args)


def test_macs_include_the_vision_towers_attention():
    """The vision tower defaults to SDPA, whose CPU kernel FlopCounterMode does not count; forward_macs
    switches every module to eager attention, so a model set to SDPA counts the same as one set to eager."""
    config = FlorenzConfig(family="florence", florence2=florence2_config(TINY_FLORENCE, 300).to_dict(),
                       decoder_vocab_size=320)
    model = FlorenzForConditionalGeneration(config)
    model.vision_tower.config._attn_implementation = "sdpa"
    with_sdpa = forward_macs(model, 32, 7, 9)
    assert model.vision_tower.config._attn_implementation == "sdpa"  # restored after counting
    model.vision_tower.config._attn_implementation = "eager"
    assert forward_macs(model, 32, 7, 9) == with_sdpa


def test_florenz_models_command_prints_paper_sizes_without_weights(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    config["results_dir"] = str(tmp_path / "results")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "florenz_lib", "models", "--config", str(tmp_path / "config.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    for printed in ("0.43B", "1.04B", "3.49B", "11.22B"):
        assert printed in result.stdout
    assert "not restructured yet" in result.stderr  # world sizes are left out, and it says so
    written = (tmp_path / "results" / "tables" / "models.csv").read_text().splitlines()
    assert written[0] == "model,family,P,Pt,F,encoder_vocab,decoder_vocab" and len(written) == 5
