import copy
import subprocess
import sys

import pytest
import yaml

from florenz_lib.config import ConfigError, load_config, validate_config

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture()
def config():
    return load_config(str(REPO / "config.yaml"))


def test_default_config_is_valid(config):
    assert config["world"]["name"] == "synthetic"


@pytest.mark.parametrize("mutate, named", [
    (lambda c: c["train"].update(lrr=0.1), "'lrr'"),
    (lambda c: c.update(tokeniser={}), "'tokeniser'"),
    (lambda c: c["train"].update(batch_size="16"), "train.batch_size"),
    (lambda c: c["models"]["florence_bases"]["base"].update(d_model=6.5), "models.florence_bases.base.d_model"),
    (lambda c: c["data"].pop("shard_size"), "shard_size"),
    (lambda c: c["models"]["sizes"]["florencegemma2-large"].update(gemma="27b"), "models.sizes.florencegemma2-large.gemma"),
    (lambda c: c["data"]["test_langs"].update(UC=["es", "klingon"]), "data.test_langs.UC.1"),
])
def test_bad_config_names_the_key(config, mutate, named):
    bad = copy.deepcopy(config)
    mutate(bad)
    with pytest.raises(ConfigError) as error:
        validate_config(bad)
    assert named in str(error.value)


def test_snakemake_stops_before_any_job_on_a_mistyped_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"results_dir": str(tmp_path / "results"), "train": {"bach_size": 8}}))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "'bach_size'" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_cli_validate_config_reports_the_key(tmp_path, config):
    bad = copy.deepcopy(config)
    bad["evaluate"]["batch_size"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = subprocess.run([sys.executable, "-m", "florenz_lib", "validate-config", "--config", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "evaluate.batch_size" in result.stderr


def test_slurm_profile_is_accepted_from_the_repo_root(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"results_dir": str(tmp_path / "results")}))
    result = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "all",
                             "--configfile", str(override)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train" in result.stdout and "This was a dry-run" in result.stdout


def test_the_cc12m_example_config_validates_merged_over_the_default_as_snakemake_merges_it():
    from snakemake.utils import update_config
    merged = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(merged, yaml.safe_load((REPO / "config.cc12m.yaml").read_text()))
    assert validate_config(merged)["world"]["name"] == "cc12m"
    del merged["cc12m"]["translator"]["model_dir"]
    with pytest.raises(ConfigError, match="cc12m.translator"):
        validate_config(merged)
