"""`florenz` (python -m florenz_lib): run any stage of the study by hand, as its Snakemake rule would."""
from __future__ import annotations

import argparse
import logging
import sys

from .config import ConfigError, load_config
from .pipeline import STAGES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="florenz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate-config", help="check a config file against the schema")
    check.add_argument("--config", default="config.yaml")
    for name, stage in STAGES.items():
        p = sub.add_parser(name, help=(stage.run.__doc__ or f"run the {name} stage").strip().splitlines()[0])
        p.add_argument("--config", default="config.yaml")
        for wildcard in stage.wildcards:
            p.add_argument(f"--{wildcard}", required=True)
        if stage.takes_threads:
            p.add_argument("--threads", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except (ConfigError, FileNotFoundError) as error:
        print(f"florenz: {error}", file=sys.stderr)
        return 2
    if args.command == "validate-config":
        print(f"{args.config}: valid")
        return 0
    stage = STAGES[args.command]
    kwargs = {w: getattr(args, w) for w in stage.wildcards}
    if stage.takes_threads:
        kwargs["threads"] = args.threads
    stage.run(config, **kwargs)
    return 0
