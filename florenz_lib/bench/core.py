"""What every benchmark family shares: result rows, paired timing, peak memory in a child process,
the fitted cost exponent, and the CSV / Markdown writers."""
from __future__ import annotations

import csv
import importlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import replacing

COLUMNS = ("name", "ours", "theirs", "unit", "ratio", "threshold", "passed")


@dataclass
class Row:
    """One comparison measured in one run: ratio = ours / theirs, checked against `threshold`
    ("" when the row is informational, else ">= x" or "<= x")."""
    family: str
    name: str
    ours: float
    theirs: float
    unit: str
    ratio: float
    threshold: str
    passed: bool | None


def make_row(family: str, name: str, ours: float, theirs: float, unit: str, op: str | None = None,
             limit: float | None = None) -> Row:
    if not (math.isfinite(ours) and math.isfinite(theirs) and ours > 0 and theirs > 0):
        raise ValueError(f"bench {family}/{name}: measurements must be positive and finite, got {ours}, {theirs}")
    ratio = ours / theirs
    if op is None:
        return Row(family, name, ours, theirs, unit, ratio, "", None)
    if op not in (">=", "<="):
        raise ValueError(f"unknown threshold operator {op!r}")
    passed = ratio >= limit if op == ">=" else ratio <= limit
    return Row(family, name, ours, theirs, unit, ratio, f"{op} {limit:g}", bool(passed))


def check(row: Row) -> bool | None:
    """The threshold comparison of a row, recomputed from its fields (None if it has none)."""
    if not row.threshold:
        return None
    op, limit = row.threshold.split()
    return row.ratio >= float(limit) if op == ">=" else row.ratio <= float(limit)


def paired_seconds(ours: Callable[[], object], theirs: Callable[[], object], repeats: int,
                   warmup: int = 1) -> tuple[float, float]:
    """Median wall seconds of each callable. Calls alternate (ours, theirs, ours, ...) after `warmup`
    unrecorded rounds, so both sides see the same background load on a shared machine."""
    for _ in range(warmup):
        ours()
        theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for side, fn in enumerate((ours, theirs)):
            started = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - started)
    return float(np.median(times[0])), float(np.median(times[1]))


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def fit_exponent(sizes, seconds) -> float:
    """k of time ~ N^k: the OLS slope of log(time) on log(N)."""
    if len(sizes) < 2 or len(sizes) != len(seconds):
        raise ValueError(f"need >= 2 (size, time) points, got {sizes}, {seconds}")
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


# ------------------------------------------------------------------------- peak memory


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line")


def peak_memory_mb(target: str, kwargs: dict) -> float:
    """Peak resident memory (MiB, VmHWM) of a fresh Python process that imports module:function
    `target` and calls it with the JSON-able kwargs; the interpreter and imports are included."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "florenz_lib.bench.core", target], input=json.dumps(kwargs),
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench child {target} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["vm_hwm_mb"])


def _child_main(target: str) -> None:
    module, function = target.split(":")
    getattr(importlib.import_module(module), function)(**json.loads(sys.stdin.read()))
    print(json.dumps({"vm_hwm_mb": _vm_hwm_mb()}))


# ------------------------------------------------------------------------------ output


def _number(value: float) -> str:
    return f"{value:.4g}"


def write_csv(rows: list[Row], path) -> None:
    with replacing(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r.name, repr(r.ours), repr(r.theirs), r.unit, repr(r.ratio), r.threshold,
                             "" if r.passed is None else str(r.passed).lower()])


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        passed = "" if r.passed is None else ("yes" if r.passed else "**NO**")
        lines.append(f"| {r.name} | {_number(r.ours)} | {_number(r.theirs)} | {r.unit} | {r.ratio:.3f} | "
                     f"{r.threshold} | {passed} |")
    return "\n".join(lines)


def write_markdown(rows: list[Row], notes: list[str], path) -> str:
    text = "# Benchmarks (`florenz bench`)\n\n" + markdown_table(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    with replacing(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    _child_main(sys.argv[1])
