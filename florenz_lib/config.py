"""Study configuration: JSON-schema validation with errors that name the offending key."""
from __future__ import annotations

import json
import os
from importlib import resources

import jsonschema
import yaml

SCHEMA = json.loads(resources.files("florenz_lib").joinpath("config.schema.json").read_text())


class ConfigError(ValueError):
    """A config key is unknown, missing, mistyped or inconsistent."""


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    path = _key_path(error)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = "top level" if path == "<top level>" else f"'{path}'"
        return f"unknown config key(s) {', '.join(repr(k) for k in unknown)} in {where}"
    if error.validator == "required":
        return f"config key '{path}': {error.message}"
    return f"config key '{path}': {error.message}"


def _base_names(config: dict) -> dict[str, tuple[str, dict]]:
    """Per family, (config key, bases) that models.sizes may name: the synthetic world's architectures
    (models.florence_bases / gemma_bases), or the cc12m world's local checkpoints (cc12m.checkpoints)."""
    if config["world"]["name"] == "cc12m":
        checkpoints = config["cc12m"]["checkpoints"]
        return {"florence": ("cc12m.checkpoints.florence", checkpoints["florence"]),
                "gemma": ("cc12m.checkpoints.gemma", checkpoints.get("gemma", {}))}
    models = config["models"]
    return {"florence": ("models.florence_bases", models["florence_bases"]),
            "gemma": ("models.gemma_bases", models["gemma_bases"])}


def _check_references(config: dict) -> list[str]:
    """Cross-references the schema cannot express: sizes must name defined base models."""
    problems = []
    models = config["models"]
    if config["world"]["name"] == "cc12m" and "cc12m" not in config:
        return ["config key 'cc12m' is required for world.name 'cc12m' (the local files of the cc12m world)"]
    bases = _base_names(config)
    for size, spec in models["sizes"].items():
        key, florence = bases["florence"]
        if spec["florence"] not in florence:
            problems.append(f"config key 'models.sizes.{size}.florence': '{spec['florence']}' "
                            f"is not one of {key} {sorted(florence)}")
        if spec["family"] == "gemma":
            key, gemma = bases["gemma"]
            if "gemma" not in spec:
                problems.append(f"config key 'models.sizes.{size}.gemma' is required for family 'gemma'")
            elif spec["gemma"] not in gemma:
                problems.append(f"config key 'models.sizes.{size}.gemma': '{spec['gemma']}' "
                                f"is not one of {key} {sorted(gemma)}")
        elif "gemma" in spec:
            problems.append(f"config key 'models.sizes.{size}.gemma' is only valid for family 'gemma'")
    for name, base in models["florence_bases"].items():
        n_stages = len(base["vision_dims"])
        for key in ("vision_depths", "vision_heads"):
            if len(base[key]) != n_stages:
                problems.append(f"config key 'models.florence_bases.{name}.{key}': needs {n_stages} "
                                f"entries like vision_dims, got {len(base[key])}")
    if len(set(config["train"]["steps"])) != len(config["train"]["steps"]):
        problems.append("config key 'train.steps': budgets must be distinct")
    if config["world"]["name"] == "synthetic":
        problems += [f"config key 'data.{key}' is required for the synthetic world" for key in ("clip", "benchmarks")
                     if key not in config["data"]]
    elif not config["downstream"]["benchmarks"].get("xm3600"):
        problems.append("config key 'downstream.benchmarks.xm3600' is required for the cc12m world: the prefix "
                        "evaluation (Figure 4) captions its images")
    return problems


def missing_cc12m_paths(config: dict) -> list[str]:
    """The cc12m world's local inputs that do not exist, each naming its config key (checked at DAG start,
    so a typo stops the run before any job, not hours into it)."""
    c = config["cc12m"]
    paths = {"cc12m.tsv": c["tsv"], "cc12m.descriptions": c["descriptions"],
             "cc12m.translator.model_dir": c["translator"]["model_dir"],
             "cc12m.translator.tokenizer_dir": c["translator"]["tokenizer_dir"], "cc12m.clip.weights": c["clip"]["weights"]}
    paths.update({f"cc12m.checkpoints.{family}.{base}": path for family, dirs in c["checkpoints"].items()
                  for base, path in dirs.items()})
    paths.update({f"cc12m.tokenizers.{name}": path for name, path in c["tokenizers"].items()})
    xm3600 = config["downstream"]["benchmarks"].get("xm3600") or {}
    paths.update({f"downstream.benchmarks.xm3600.{key}": xm3600[key] for key in ("captions", "images") if key in xm3600})
    if c["clip"].get("model_config"):
        paths["cc12m.clip.model_config"] = c["clip"]["model_config"]
    for source, entry in c.get("finetune", {}).items():
        paths.update({f"cc12m.finetune.{source}.{key}": path for key, path in entry.items() if key != "splits"})
    for lang, entry in c["corpus"]["files"].items():
        if isinstance(entry, dict):
            paths.update({f"cc12m.corpus.files.{lang}.{side}": path for side, path in entry.items()})
        else:
            paths[f"cc12m.corpus.files.{lang}"] = entry
    return [f"config key '{key}': no such file or directory {path}" for key, path in paths.items()
            if not os.path.exists(str(path))]


def drop_null_sizes(config: dict) -> dict:
    """Remove the study sizes set to null, in place: how a --configfile overlay, which Snakemake merges key
    by key into config.yaml, drops a size the base config defines (`models: {sizes: {florence2-large: null}}`)."""
    sizes = config.get("models", {}).get("sizes")
    if isinstance(sizes, dict):
        for size in [name for name, spec in sizes.items() if spec is None]:
            del sizes[size]
    return config


def validate_config(config: dict) -> dict:
    """Drop null sizes (drop_null_sizes), then raise ConfigError listing every problem, each naming its key;
    return the config."""
    drop_null_sizes(config)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    if not problems:
        problems = _check_references(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return config


def read_config_file(path: str) -> dict:
    """One YAML config file as a mapping; a missing file, a YAML error or a non-mapping names the file."""
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path} does not hold a mapping of keys")
    return config


def load_config(*paths: str) -> dict:
    """The config files merged in order as Snakemake merges --configfile overlays (nested mappings
    key by key, anything else replaced), then validated."""
    from snakemake.utils import update_config
    config: dict = {}
    for path in paths:
        update_config(config, read_config_file(path))
    return validate_config(config)
