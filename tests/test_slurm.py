"""The study through `snakemake --profile slurm` on a real single-node SLURM cluster (slurmctld, slurmd
and munge on this host, brought up by scripts/slurm-local-up.sh and down by scripts/slurm-local-down.sh):
every job runs as a SLURM job, and the results equal those of a local run of the same config.

Run with `pytest -m slurm` (as root: the script installs the Debian packages and starts the daemons);
`make test` leaves it out and CI runs it as a step of its own."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from test_dag import REDUCED

REPO = Path(__file__).resolve().parents[1]
N_SIZES = len(yaml.safe_load((REPO / "config.yaml").read_text())["models"]["sizes"])
# The reduced DAG with the shortest runs that still fit both laws (two budgets, four sizes), up to the
# report rule's law fits (the target `report`: data, models, train, evaluate, tables, report).
CONFIG = {"results_dir": "results", **REDUCED,
          "models": {"base_pretraining": {"steps": 8, "batch_size": 8}},
          "train": {"steps": [2, 4], "batch_size": 4, "warmup_steps": 1}}
TARGET = "report"
# Both snakemakes together must end well within this; past it the SLURM one gets SIGINT (on SIGTERM
# snakemake would wait for its cluster jobs forever).
TIMEOUT_S = 1500


def _cluster_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=60)
    return result.returncode == 0 and bool({"idle", "mix", "alloc"} & set(result.stdout.split()))


@pytest.fixture(scope="module")
def slurm_cluster():
    """The local cluster: reused if one answers already, else started here and stopped afterwards."""
    if _cluster_answers():
        yield
        return
    if os.geteuid() != 0:
        pytest.skip("no SLURM cluster answers and starting one needs root (scripts/slurm-local-up.sh)")
    up = subprocess.run(["bash", str(REPO / "scripts" / "slurm-local-up.sh")], capture_output=True, text=True)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    try:
        yield
    finally:
        down = subprocess.run(["bash", str(REPO / "scripts" / "slurm-local-down.sh")], capture_output=True,
                              text=True)
        assert down.returncode == 0, down.stdout + down.stderr


def _snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    """From the repository root, where `--profile slurm` names the project's profile."""
    cmd = [sys.executable, "-m", "snakemake", TARGET, "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=open(workdir / "snakemake.out", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish_embeddings(job: subprocess.Popen, deadline: float, workdir: Path) -> None:
    try:
        job.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        job.send_signal(signal.SIGINT)  # snakemake cancels its SLURM jobs and exits
        try:
            job.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        pytest.fail(f"snakemake in {workdir} ran past {TIMEOUT_S} s:\n"
                    + (workdir / "snakemake.out").read_text()[-4000:])
    assert job.returncode == 0, (workdir / "snakemake.out").read_text()[-6000:]


@pytest.fixture(scope="module")
def study_runs(slurm_cluster, tmp_path_factory):
    """The same config through the SLURM profile and locally. They run at the same time: the local run
    fills the cores while the SLURM run waits on scheduling."""
    workdirs = {name: tmp_path_factory.mktemp(name) for name in ("slurm", "local")}
    for workdir in workdirs.values():
        (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    started = time.monotonic()
    # squeue is polled every second while jobs finish (the profile's 5 s is for real clusters)
    on_slurm = _snakemake(workdirs["slurm"], "--profile", "slurm", "--slurm-init-seconds-before-status-checks", "1",
                          "--latency-wait", "5")
    local = _snakemake(workdirs["local"], "--cores", "2")
    deadline = started + TIMEOUT_S
    finish_embeddings(on_slurm, deadline, workdirs["slurm"])
    slurm_s = time.monotonic() - started
    # what the controller says of them, while it still knows them (MinJobAge 300 s)
    ids = [int(log.stem) for log in (workdirs["slurm"] / ".snakemake" / "slurm_logs").rglob("*.log")]
    states = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(map(str, ids)), "-o", "%i %T"],
                            capture_output=True, text=True, check=True).stdout
    (workdirs["slurm"] / "squeue.txt").write_text(states)
    finish_embeddings(local, deadline, workdirs["local"])
    print(f"\nreduced study: SLURM run {slurm_s:.0f} s, both runs {time.monotonic() - started:.0f} s")
    return workdirs


def _dag_rules(workdir: Path) -> set[str]:
    out = (workdir / "snakemake.out").read_text()
    stats = out.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]
    return {line.split()[0] for line in stats if line.split() and line.split()[0] != "total"}


@pytest.mark.slow
@pytest.mark.slurm
def test_every_job_ran_as_a_slurm_job(study_runs):
    workdir = study_runs["slurm"]
    logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    by_rule: dict[str, list[int]] = {}
    for log in logs:
        rule = log.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0].removeprefix("rule_")
        by_rule.setdefault(rule, []).append(int(log.stem))  # <SLURM job id>.log
    local_rules = {"study_config"}  # writes the config file the train jobs read
    assert set(by_rule) == _dag_rules(workdir) - local_rules
    assert {"world", "restructure", "train", "evaluate", "tables", "report"} <= set(by_rule)
    assert len(by_rule["train"]) == 2 * N_SIZES
    # the controller's word on them, taken as the run ended: those it still knows (it forgets a job
    # MinJobAge = 300 s after it ends) completed, and the last ones are among them
    states = dict(line.split() for line in (workdir / "squeue.txt").read_text().splitlines() if line.strip())
    ids = sorted(i for ids in by_rule.values() for i in ids)
    assert set(states.values()) == {"COMPLETED"} and {str(i) for i in ids[-3:]} <= set(states)
    # each train job is one SLURM task that ran torchrun with one process (gpu=0)
    train_log = (workdir / "results" / "logs" / "train" / "florence2-base_steps4.log").read_text()
    assert "1 process(es)" in train_log and "none on cpu" in train_log


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_results_equal_the_local_run(study_runs):
    slurm, local = (study_runs[k] / "results" for k in ("slurm", "local"))
    for table in ("runs.csv", "law1.csv", "law2.csv", "law2_contrasts.csv"):
        a, b = pd.read_csv(slurm / "tables" / table), pd.read_csv(local / "tables" / table)
        assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0, table
        numeric = a.select_dtypes("number").columns
        pd.testing.assert_frame_equal(a.drop(columns=numeric), b.drop(columns=numeric))
        np.testing.assert_allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float), rtol=1e-9, atol=0,
                                   equal_nan=True, err_msg=table)
    trained = sorted(slurm.glob("runs/*/*/model.safetensors"))
    assert len(trained) == 2 * N_SIZES
    for path in trained:
        a, b = load_file(path), load_file(local / path.relative_to(slurm))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), path
        for name in ("train_log.csv", "train_summary.json"):
            ours, theirs = (d / path.parent.relative_to(slurm) / name for d in (slurm, local))
            if name == "train_log.csv":  # samples/s is a measurement
                ours, theirs = (pd.read_csv(p).drop(columns="samples_per_s") for p in (ours, theirs))
                pd.testing.assert_frame_equal(ours, theirs)
            else:
                assert ours.read_text() == theirs.read_text()


def test_profile_gives_training_one_process_per_gpu(tmp_path):
    """Dry run (no cluster needed): with cluster.gpus_per_job N the train jobs ask SLURM for N GPUs and
    start torchrun with N processes."""
    # results_dir after CONFIG's relative one: a dry run must not see the repository's own results/
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "results_dir": str(tmp_path / "results"),
                                                          "cluster": {"gpus_per_job": 4}}))
    result = subprocess.run([sys.executable, "-m", "snakemake", "all", "--profile", "slurm", "-n", "-p",
                             "--configfile", str(tmp_path / "config.yaml")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--nproc_per_node $(( 4 > 0 ? 4 : 1 )) -m florenz_lib train" in result.stdout
    assert "gpu=4" in result.stdout and "cpus_per_gpu=1" in result.stdout
