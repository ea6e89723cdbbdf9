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


def _check_references(config: dict) -> list[str]:
    """Cross-references the schema cannot express: sizes must name defined base models."""
    problems = []
    models = config["models"]
    for size, spec in models["sizes"].items():
        if spec["florence"] not in models["florence_bases"]:
            problems.append(f"config key 'models.sizes.{size}.florence': '{spec['florence']}' "
                            f"is not one of models.florence_bases {sorted(models['florence_bases'])}")
        if spec["family"] == "gemma":
            if "gemma" not in spec:
                problems.append(f"config key 'models.sizes.{size}.gemma' is required for family 'gemma'")
            elif spec["gemma"] not in models["gemma_bases"]:
                problems.append(f"config key 'models.sizes.{size}.gemma': '{spec['gemma']}' "
                                f"is not one of models.gemma_bases {sorted(models['gemma_bases'])}")
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
    elif "cc12m" not in config:
        problems.append("config key 'cc12m' is required for world.name 'cc12m' (the local files of the cc12m world)")
    return problems


def missing_cc12m_paths(config: dict) -> list[str]:
    """The cc12m world's local inputs that do not exist, each naming its config key (checked at DAG start,
    so a typo stops the run before any job, not hours into it)."""
    c = config["cc12m"]
    paths = {"cc12m.tsv": c["tsv"], "cc12m.descriptions": c["descriptions"],
             "cc12m.translator.model_dir": c["translator"]["model_dir"],
             "cc12m.translator.tokenizer_dir": c["translator"]["tokenizer_dir"], "cc12m.clip.weights": c["clip"]["weights"]}
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


def validate_config(config: dict) -> dict:
    """Raise ConfigError listing every problem, each naming its key; return the config unchanged."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    if not problems:
        problems = _check_references(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return config


def load_config(path: str) -> dict:
    with open(path) as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path} does not hold a mapping of keys")
    return validate_config(config)
