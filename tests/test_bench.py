"""`florenz bench` at its smallest sizes: it runs every family, writes well-formed rows, and its exit
code and message follow the threshold checks. The thresholds themselves are the bench's own business
(timings on a shared machine are not asserted here)."""
import math

import pytest

from florenz_lib.bench import FAMILIES
from florenz_lib.bench.core import COLUMNS, check, fit_exponent, make_row, read_csv
from florenz_lib.cli import main


def test_make_row_checks_the_threshold_and_rejects_bad_measurements():
    row = make_row("f", "x", 3.0, 2.0, "s", ">=", 1.5)
    assert row.ratio == 1.5 and row.threshold == ">= 1.5" and row.passed is True and check(row) is True
    assert make_row("f", "x", 1.0, 2.0, "s", ">=", 0.9).passed is False
    assert make_row("f", "x", 1.0, 2.0, "s", "<=", 0.4).passed is False
    assert make_row("f", "x", 1.0, 2.0, "s").passed is None
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="positive and finite"):
            make_row("f", "x", bad, 1.0, "s")


def test_fit_exponent_recovers_power_laws():
    sizes = [100, 400, 1600]
    assert fit_exponent(sizes, [2e-3 * n for n in sizes]) == pytest.approx(1.0)
    assert fit_exponent(sizes, [1e-6 * n ** 2 for n in sizes]) == pytest.approx(2.0)


def test_bench_runs_every_family_and_writes_well_formed_rows(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--sizes", "test", "--out", str(out)])
    printed = capsys.readouterr()

    rows = []
    for family in FAMILIES:
        family_rows = read_csv(out / f"{family}.csv")
        assert family_rows, family
        assert list(family_rows[0]) == list(COLUMNS)
        rows.extend(family_rows)
    names = {r["name"] for r in rows}
    for expected in ("trainer vs transformers Trainer", "data loader vs trainer consumption",
                     "CE eval stage vs bare forward", "synthetic world embed_images vs preloaded bare forward",
                     "streamed peak memory growth 1x -> 16x",
                     "CTranslate2 vs transformers generate (greedy, identical outputs)"):
        assert expected in names
    assert any(n.startswith("align_part exponent k") for n in names)
    assert any(n.startswith("write_slice_shards exponent k") for n in names)
    assert any(n.startswith("top-5 throughput") for n in names)
    assert any(n.startswith("CLIP embed_image_slice vs load + bare forward") for n in names)

    failed = []
    for r in rows:
        ours, theirs, ratio = float(r["ours"]), float(r["theirs"]), float(r["ratio"])
        assert all(math.isfinite(v) and v > 0 for v in (ours, theirs, ratio)), r
        assert ratio == pytest.approx(ours / theirs, rel=1e-12), r
        if r["threshold"]:
            op, limit = r["threshold"].split()
            assert op in (">=", "<=")
            expected = ratio >= float(limit) if op == ">=" else ratio <= float(limit)
            assert r["passed"] == str(expected).lower(), r
            if not expected:
                failed.append(r["name"])
        else:
            assert r["passed"] == "", r
    thresholded = {r["name"] for r in rows if r["threshold"]}
    assert thresholded >= {"trainer vs transformers Trainer", "data loader vs trainer consumption",
                           "streamed peak memory growth 1x -> 16x",
                           "CTranslate2 vs transformers generate (greedy, identical outputs)"}
    assert any(n.startswith("CLIP embed_image_slice vs load") for n in thresholded)
    assert any(n.startswith("align_part exponent") for n in thresholded)

    # the table is printed and written; the exit code and message name every missed threshold
    table = (out / "bench.md").read_text()
    assert "| name | ours | theirs | unit | ratio | threshold | passed |" in table
    assert table.strip() in printed.out
    assert code == (1 if failed else 0)
    for name in failed:
        assert name in printed.err


def test_bench_only_runs_the_named_families(tmp_path):
    out = tmp_path / "bench"
    main(["bench", "--sizes", "test", "--out", str(out), "--only", "growth"])
    assert sorted(p.name for p in out.iterdir()) == ["bench.md", "growth.csv"]
    with pytest.raises(SystemExit):
        main(["bench", "--only", "nonsense"])
