"""The Snakemake HTML report of the report rules, rendered by headless Chromium.

Only rule `report` runs (on a synthetic runs table placed where rule `tables` would write
it; `--allowed-rules report` keeps Snakemake from rebuilding it from the whole study), then
`snakemake --report` builds the self-contained HTML, and Chromium renders it: the landing
page must show the law tables (split names, R^2) and the figures, and every result must
carry its caption. `make test` installs Chromium (`make chromium`); without it the test
fails, saying so.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_report import synthetic_runs

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=10000")
REPORT_TABLES = ("law1", "law2", "law2_contrasts", "law2_diagnostics", "law2_bootstrap", "extrapolation",
                 "law2_holdout")



def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--allowed-rules", "report", "--cores", "1", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def _chromium(workdir: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is not installed: run `make chromium` (make test does)"
    profile = workdir / f"chromium-profile-{len(list(workdir.glob('chromium-profile-*')))}"
    profile.mkdir()
    result = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _visible_text(dom: str) -> str:
    body = dom[dom.index('id="app"'):]
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("html_report")
    tables = workdir / "results" / "tables"
    tables.mkdir(parents=True)
    synthetic_runs().to_csv(tables / "runs.csv", index=False)
    (workdir / "config.yaml").write_text(yaml.safe_dump(
        {"results_dir": "results", "report": {"targets": [{"P": 3.0e10, "S": 1.0e7, "T": 3.0}],
                                              "bootstrap_samples": 50}}))
    targets = [f"results/tables/{name}.csv" for name in REPORT_TABLES]
    _snakemake(workdir, *targets)
    _snakemake(workdir, "--report", "results/report.html", *targets)
    return workdir / "results" / "report.html"


def test_every_report_result_is_captioned(report_html):
    page = report_html.read_text(encoding="utf-8")
    payload = re.search(r'<script id="results">\s*var results = (.*?);?\s*</script>', page, re.S).group(1)
    results = json.loads(payload.rstrip().rstrip(";"))
    names = {entry["name"] for entry in results.values()}
    assert names == {f"{t}.csv" for t in REPORT_TABLES} | {f"law{n}_{s}.png" for n in (1, 2) for s in ("UC", "ST", "SC")}
    for entry in results.values():
        assert len(entry["caption"]) > 100, entry["name"]
        assert "system-message" not in entry["caption"], entry["name"]  # no docutils error
        if entry["name"].endswith(".csv"):
            assert "<table" in entry["caption"], entry["name"]  # the caption shows the table itself
        else:
            assert entry["labels"]["split"] in entry["name"]


def test_html_report_renders_law_tables_and_figures(report_html):
    workdir = report_html.parent.parent
    url = report_html.resolve().as_uri()
    dom = _chromium(workdir, url, "--dump-dom").stdout
    text = _visible_text(dom)

    assert "Florenz scaling-law study" in text
    for split in ("UC", "ST", "SC"):
        assert split in text
    assert "R^2" in text and "r2" in text
    law1 = pd.read_csv(workdir / "results" / "tables" / "law1.csv")
    law2 = pd.read_csv(workdir / "results" / "tables" / "law2.csv")
    # The rendered tables carry the fitted values themselves.
    for value in (law1["r2"].iloc[0], law1["a1"].iloc[2], law2["coef"].iloc[5]):
        assert repr(float(value)) in text
    for category in ("Law 1", "Law 2", "Extrapolation"):
        assert category in text
    embedded = re.findall(r'<img[^>]+src="data:image/png;[^"]*filename=(law[12]_(?:UC|ST|SC)\.png)', dom)
    assert sorted(set(embedded)) == sorted(f"law{n}_{s}.png" for n in (1, 2) for s in ("UC", "ST", "SC"))

    screenshot = workdir / "report.png"
    _chromium(workdir, url, f"--screenshot={screenshot}", "--window-size=1400,2000")
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a rendered page, not a blank one
