"""`florenz` (python -m florenz_lib): run any stage of the study by hand, as its Snakemake rule would."""
from __future__ import annotations

import argparse
import logging
import sys

from .config import ConfigError, load_config
from .pipeline import STAGES


def _add_configfile(parser: argparse.ArgumentParser, what: str = "the study config") -> None:
    parser.add_argument("--configfile", "--config", dest="configfile", nargs="+", metavar="FILE",
                        help=f"{what}: one or more YAML files merged in order as Snakemake merges --configfile "
                             "overlays (default: config.yaml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="florenz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate-config", help="check config files, merged as Snakemake merges them, "
                                                   "against the schema")
    _add_configfile(check, "the config to check")
    for name, stage in STAGES.items():
        p = sub.add_parser(name, help=(stage.run.__doc__ or f"run the {name} stage").strip().splitlines()[0])
        _add_configfile(p)
        for wildcard in stage.wildcards:
            p.add_argument(f"--{wildcard}", required=True)
        if stage.takes_threads:
            p.add_argument("--threads", type=int, default=1)
    # Not a DAG stage (extra arguments); florenz_lib.report.planner documents the method.
    plan = sub.add_parser("plan", help="least-compute (P, S) reaching a target loss, from law 2")
    _add_configfile(plan, "the study config, whose results_dir locates tables/runs.csv unless --runs is given")
    plan.add_argument("--runs", help="a runs table (DESIGN.md 5b columns) instead of the study's runs.csv")
    plan.add_argument("--split", required=True, choices=["UC", "ST", "SC"])
    plan.add_argument("--target", required=True, type=float, help="target test CE loss")
    plan.add_argument("--T", type=float, help="initial loss T of the base model; default: per family, the T of "
                                              "its model nearest in P")
    plan.add_argument("--family", help="only plan models of this family")
    plan.add_argument("--P-min", dest="P_min", type=float, help="smallest P searched (default: smallest in the runs)")
    plan.add_argument("--P-max", dest="P_max", type=float, help="largest P searched (default: largest in the runs)")
    plan.add_argument("--grid", type=int, default=2001, help="points of the log grid over P")
    # Not a DAG stage: florenz_lib.bench measures the heavy stages against what a user would otherwise use.
    from .bench import FAMILIES
    bench = sub.add_parser("bench", help="benchmark the heavy stages against their plain alternatives")
    bench.add_argument("--quick", action="store_true", help="the quick sizes (minutes on a laptop CPU)")
    bench.add_argument("--sizes", choices=["test", "quick", "full"], help="size preset (overrides --quick)")
    bench.add_argument("--out", default="results/bench", help="directory for <family>.csv and bench.md")
    bench.add_argument("--only", nargs="+", choices=FAMILIES, metavar="NAME",
                       help=f"run only these benchmarks ({', '.join(FAMILIES)})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "configfile"):
        args.configfile = args.configfile or ["config.yaml"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "bench":  # builds its own data; no config
        from .bench.run import run_cli as run_bench_cli
        return run_bench_cli(args)
    if args.command == "plan":  # reads a runs table; the config only locates it
        from .report.planner import run_cli
        return run_cli(args)
    files = args.configfile
    try:
        config = load_config(*files)
    except ConfigError as error:
        print(f"florenz: {error}", file=sys.stderr)
        return 2
    if args.command == "validate-config":
        print(f"{' + '.join(files)}: valid")
        return 0
    stage = STAGES[args.command]
    kwargs = {w: getattr(args, w) for w in stage.wildcards}
    if stage.takes_threads:
        kwargs["threads"] = args.threads
    stage.run(config, **kwargs)
    return 0
