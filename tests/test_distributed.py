"""Training at scale on CPU: data-parallel runs under torchrun (gloo) match a single process, gradient
accumulation matches one large batch (under either loss reduction: the targets have unequal lengths, so
the token mean and the sample mean differ), and a run killed with SIGKILL resumes from its last checkpoint
to the very weights of an uninterrupted run."""
import copy
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from florenz_lib.cli import main as florenz_cli
from florenz_lib.config import ConfigError, load_config, validate_config
from florenz_lib.data.shards import SHARD_SCHEMA
from florenz_lib.models.florenz import save_florenz
from florenz_lib.models.restructure import florenz_from_florence2_and_gemma2
from florenz_lib.models.tokenizers import save_tokenizer
from florenz_lib.paths import Layout
from florenz_lib.train.balancing import TASK_LANGUAGE_KEYS
from florenz_lib.train.checkpoint import (Checkpointing, find_resumable, latest_checkpoint, load_model_state,
                                          load_training_state, save_checkpoint)
from florenz_lib.train.data import BalancedImageStream, RankBatches
from florenz_lib.train.distributed import DistContext
from florenz_lib.train.loop import OptimConfig, make_optimizer, warmup_cosine
from florenz_lib.train.runs import batch_geometry, run_fingerprint

REPO = Path(__file__).resolve().parents[1]
STEPS = 24
# one optimizer step = 4 samples; lr small enough that fp32 reduction-order noise stays ~1e-7
TRAIN = {"steps": [STEPS], "batch_size": 4, "micro_batch_size": 4, "lr": 2e-3, "warmup_steps": 2,
         "checkpoint_every": 4, "threads": 1, "fsdp_sizes": []}


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


WORDS = "two red circles left of a blue square".split()


def _rows(n_images: int) -> list[dict]:
    """Targets of 3 to 10 decoder tokens (within the training limit of 16): unequal lengths."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_images):
        keys = ["caption-en", "caption-de"] + [k for k in TASK_LANGUAGE_KEYS[2:] if rng.random() < 0.5]
        rows.append({"key": f"img-{i}", "png": _png(i), "annotations": [
            {"task": k.split("-")[0], "lang": k.split("-")[1],
             "source": f"a red circle number {i}" if k.startswith("translation") else "",
             "target": " ".join(WORDS[:1 + (i + j) % len(WORDS)])} for j, k in enumerate(keys)]})
    return rows


@pytest.fixture(scope="module")
def study_inputs(tmp_path_factory, base_models, tokenizers):
    """What the train stage reads: a restructured gemma-family init model, tokenizers, one shard."""
    root = tmp_path_factory.mktemp("inputs")
    L = Layout(str(root))
    torch.manual_seed(0)
    save_florenz(florenz_from_florence2_and_gemma2(*base_models), L.init_model("tiny"))
    save_tokenizer(tokenizers[0], L.tokenizers("encoder.json"))
    save_tokenizer(tokenizers[1], L.tokenizers("decoder.json"))
    os.makedirs(L.shards())
    pq.write_table(pa.Table.from_pylist(_rows(20), schema=SHARD_SCHEMA), os.path.join(L.shards(), "shard-00000.parquet"))
    return root


def _run_dir(tmp_path: Path, study_inputs: Path, **train) -> Path:
    """A study dir of its own (the inputs copied, so file signatures match) with its config.yaml."""
    shutil.copytree(study_inputs, tmp_path / "results", copy_function=shutil.copy2)
    config = load_config(str(REPO / "config.yaml"))
    config["results_dir"] = str(tmp_path / "results")
    config["world"]["image_size"] = 32
    config["models"].update(max_prompt_tokens=24, max_target_tokens=16,
                            sizes={"tiny": {"family": "gemma", "florence": "base", "gemma": "2b"}})
    config["train"].update(copy.deepcopy(TRAIN), **train)
    validate_config(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def _out(run_dir: Path) -> Path:
    return run_dir / "results" / "runs" / "tiny" / f"steps{STEPS}"


def _torchrun(run_dir: Path, nproc: int) -> list[str]:
    """The train rule's command."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
            str(nproc), "-m", "florenz_lib", "train", "--config", str(run_dir / "config.yaml"), "--size", "tiny",
            "--steps", str(STEPS)]


def _train_subprocess(run_dir: Path, nproc: int) -> None:
    result = subprocess.run(_torchrun(run_dir, nproc), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def _train_in_process(run_dir: Path) -> None:
    threads = torch.get_num_threads()
    try:
        assert florenz_cli(["train", "--config", str(run_dir / "config.yaml"), "--size", "tiny",
                            "--steps", str(STEPS)]) == 0
    finally:
        torch.set_num_threads(threads)


def _log(run_dir: Path) -> list[list[str]]:
    return [line.split(",") for line in (_out(run_dir) / "train_log.csv").read_text().splitlines()[1:]]


def _losses(run_dir: Path) -> np.ndarray:
    return np.array([float(row[1]) for row in _log(run_dir)])


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(_out(run_dir) / "model.safetensors")


def _summary(run_dir: Path) -> dict:
    return json.loads((_out(run_dir) / "train_summary.json").read_text())


def _assert_same_training(a: Path, b: Path, atol: float) -> None:
    assert len(_log(a)) == len(_log(b)) == STEPS
    np.testing.assert_allclose(_losses(a), _losses(b), rtol=0, atol=atol)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    print(f"{a.name} vs {b.name}: losses differ by {np.abs(_losses(a) - _losses(b)).max():.2g}, weights by {worst:.2g}")
    assert worst <= atol, f"weights differ by {worst}"
    assert _summary(a)["task_language_counts"] == _summary(b)["task_language_counts"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, study_inputs):
    """One process, the whole batch of 4 in one forward/backward, the default token mean."""
    run_dir = _run_dir(tmp_path_factory.mktemp("reference"), study_inputs)
    _train_in_process(run_dir)
    assert _summary(run_dir)["loss"] == "token_mean"
    return run_dir


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, study_inputs):
    """Two gloo processes under torchrun, 2 accumulated micro-batches of 1 sample each."""
    run_dir = _run_dir(tmp_path_factory.mktemp("ddp"), study_inputs, micro_batch_size=1)
    _train_subprocess(run_dir, 2)
    return run_dir


# ---------------------------------------------------------------- fast unit tests


@pytest.mark.parametrize("batch, micro, world, expected", [
    (16, None, 1, (16, 1)), (16, 16, 1, (16, 1)), (16, 32, 1, (16, 1)),  # the laptop default
    (1024, 32, 8, (32, 4)),                                              # the paper: 8 GPUs x 32 x 4
    (1024, 32, 4, (32, 8)), (16, 5, 1, (4, 4)), (12, 5, 2, (3, 2)),
])
def test_batch_geometry(batch, micro, world, expected):
    per_device, accum = batch_geometry(batch, micro, world)
    assert (per_device, accum) == expected and per_device * accum * world == batch


def test_batch_geometry_rejects_an_uneven_split():
    with pytest.raises(ValueError, match="batch_size 6 cannot be split evenly over 4"):
        batch_geometry(6, None, 4)


def test_train_config_keys_are_validated():
    config = load_config(str(REPO / "config.yaml"))
    for key, bad in (("micro_batch_size", 0), ("checkpoint_every", -1), ("fsdp_sizes", "florence2-base"),
                     ("loss", "per_batch")):
        broken = copy.deepcopy(config)
        broken["train"][key] = bad
        with pytest.raises(ConfigError, match=f"train.{key}"):
            validate_config(broken)
    old_style = copy.deepcopy(config)
    for key in ("micro_batch_size", "checkpoint_every", "fsdp_sizes"):  # configs from before still work
        del old_style["train"][key]
    validate_config(old_style)


def test_ranks_draw_disjoint_slices_of_the_same_global_stream():
    rows = [{"png": b"", "annotations": r["annotations"]} for r in _rows(10)]
    collate = list  # keep the examples' (index, annotation) pairs visible

    def draws(world, accum, b):
        streams = [BalancedImageStream(rows, seed=5) for _ in range(world)]
        for s in streams:
            s.example = lambda i, a: (i, a["task"], a["lang"])
        ranks = [RankBatches(s, collate, b, world, r, accum) for r, s in enumerate(streams)]
        steps = []
        for _ in range(6):  # 6 optimizer steps
            micro = [[rank() for _ in range(accum)] for rank in ranks]
            steps.append([x for k in range(accum) for r in range(world) for x in micro[r][k]])
        return steps, ranks

    single, _ = draws(1, 1, 8)
    for world, accum, b in ((2, 1, 4), (4, 2, 1), (2, 2, 2)):
        sharded, ranks = draws(world, accum, b)
        assert sharded == single  # the global batch does not depend on the split
        # every rank holds the same sampler position, the balancer's shares are global
        assert all(r.state_dict() == ranks[0].state_dict() for r in ranks)
    one_rank = RankBatches(BalancedImageStream(rows, seed=5), collate, 4, 2, 1, 1)
    one_rank.stream.example = lambda i, a: (i, a["task"], a["lang"])
    assert one_rank() == single[0][4:]  # rank 1 of 2: the second half of each global batch


def test_a_checkpoint_is_resumed_only_under_the_same_loss_reduction(study_inputs):
    L = Layout(str(study_inputs))
    train = {**load_config(str(REPO / "config.yaml"))["train"], **TRAIN}
    token, sample = (run_fingerprint(L.init_model("tiny"), L.shards(), train, STEPS, 0, loss)
                     for loss in ("token_mean", "sample_mean"))
    assert token != sample


def test_sampler_state_round_trips_through_json():
    rows = [{"png": _png(i), "annotations": r["annotations"]} for i, r in enumerate(_rows(5))]
    stream = BalancedImageStream(rows, seed=1)
    stream.next_choices(13)  # mid-epoch
    state = json.loads(json.dumps(stream.state_dict()))
    expected = stream.next_choices(20)
    resumed = BalancedImageStream(rows, seed=99)
    resumed.load_state_dict(state)
    assert resumed.next_choices(20) == expected
    assert resumed.balancer.counts == stream.balancer.counts


def _tiny_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 6), torch.nn.Linear(6, 6), torch.nn.LayerNorm(6))
    model[2].requires_grad_(False)  # a frozen part is left out of the checkpoint
    return model


def _tiny_step(model, optimizer, scheduler):
    out = model(torch.arange(10))
    (out * torch.rand_like(out)).pow(2).mean().backward()  # random like dropout: the RNG state matters
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


def test_checkpoint_restores_optimizer_scheduler_and_rng_without_pickle(tmp_path):
    cfg = OptimConfig(lr=0.1, weight_decay=0.1, warmup_steps=2)
    model = _tiny_model()
    optimizer = make_optimizer(model, cfg)
    scheduler = warmup_cosine(optimizer, cfg.warmup_steps, 10)
    for _ in range(3):
        _tiny_step(model, optimizer, scheduler)
    ckpt = Checkpointing(str(tmp_path / "ckpt"), every=3, fingerprint={"lr": 0.1})
    path = save_checkpoint(ckpt, 3, model, optimizer, scheduler, DistContext(), {"order": [1, 2]}, [[1, "x"]], [0.5])
    assert sorted(os.listdir(path)) == ["model.safetensors", "optimizer.safetensors", "rng.safetensors",
                                        "state.json", "train_log.csv"]
    assert "2.weight" not in load_file(os.path.join(path, "model.safetensors"))  # frozen
    for _ in range(2):
        _tiny_step(model, optimizer, scheduler)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    resumed = find_resumable(ckpt)
    assert resumed.step == 3 and resumed.state["sampler"] == {"order": [1, 2]} and resumed.losses == [0.5]
    fresh = _tiny_model()
    load_model_state(fresh, resumed)
    optimizer2 = make_optimizer(fresh, cfg)
    scheduler2 = warmup_cosine(optimizer2, cfg.warmup_steps, 10)
    torch.manual_seed(123)  # the checkpoint's RNG state replaces this
    load_training_state(fresh, optimizer2, scheduler2, DistContext(), resumed)
    for _ in range(2):
        _tiny_step(fresh, optimizer2, scheduler2)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, expected[k]), k

    # a checkpoint made with other settings is not resumed; a newer one replaces the older
    assert find_resumable(Checkpointing(ckpt.directory, 3, {"lr": 0.2})) is None
    save_checkpoint(ckpt, 6, model, optimizer, scheduler, DistContext(), {}, [], [])
    assert latest_checkpoint(ckpt.directory).endswith("step-00000006")
    assert os.listdir(ckpt.directory) == ["step-00000006"]


# ---------------------------------------------------------------- runs through the train stage


def test_run_writes_the_stage_outputs_and_tensorboard(reference):
    out = _out(reference)
    assert {"model.safetensors", "config.json", "train_log.csv", "train_summary.json"} <= set(os.listdir(out))
    assert not (out / "checkpoints").exists()  # removed once the model is saved
    header = (out / "train_log.csv").read_text().splitlines()[0]
    assert header == "step,loss,lr,samples_per_s,seen_samples"
    assert _log(reference)[-1][4] == str(STEPS * 4)
    summary = _summary(reference)
    assert summary["seen_samples"] == STEPS * 4 and summary["processes"] == 1 and summary["grad_accum"] == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "train/samples_per_s", "train/seen_samples"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, STEPS + 1))


def test_gradient_accumulation_matches_one_large_batch(tmp_path, study_inputs, reference):
    run_dir = _run_dir(tmp_path, study_inputs, micro_batch_size=1)  # 4 accumulated micro-batches of 1
    _train_in_process(run_dir)
    assert _summary(run_dir)["grad_accum"] == 4
    _assert_same_training(run_dir, reference, atol=1e-5)


@pytest.mark.slow
def test_ddp_two_processes_with_accumulation_match_one_process(ddp, reference):
    """The token mean over the global batch although the ranks' micro-batches hold unequal token counts."""
    assert _summary(ddp)["processes"] == 2 and _summary(ddp)["parallel"] == "ddp"
    assert _summary(ddp)["grad_accum"] == 2 and _summary(reference)["grad_accum"] == 1
    _assert_same_training(ddp, reference, atol=1e-5)


@pytest.mark.slow
def test_sample_mean_under_ddp_matches_one_process_and_differs_from_token_mean(tmp_path, study_inputs, reference):
    one = _run_dir(tmp_path / "one", study_inputs, loss="sample_mean", micro_batch_size=1)  # 1 x 4 accumulated
    _train_in_process(one)
    two = _run_dir(tmp_path / "two", study_inputs, loss="sample_mean", micro_batch_size=1)  # 2 x 2 accumulated
    _train_subprocess(two, 2)
    assert _summary(one)["loss"] == _summary(two)["loss"] == "sample_mean"
    assert (_summary(one)["grad_accum"], _summary(two)["grad_accum"]) == (4, 2)
    _assert_same_training(two, one, atol=1e-5)
    assert np.abs(_losses(one) - _losses(reference)).max() > 1e-3


@pytest.mark.slow
def test_fsdp_two_processes_match_one_process(tmp_path, study_inputs, reference):
    """Sharded parameters, and 2 accumulated micro-batches of 1 per process (gradient sync skipped
    on the first)."""
    run_dir = _run_dir(tmp_path, study_inputs, micro_batch_size=1, fsdp_sizes=["tiny"])
    _train_subprocess(run_dir, 2)
    assert _summary(run_dir)["parallel"] == "fsdp" and _summary(run_dir)["grad_accum"] == 2
    _assert_same_training(run_dir, reference, atol=1e-5)


@pytest.mark.slow
def test_sigkilled_run_resumes_from_its_last_checkpoint_to_the_same_weights(tmp_path, study_inputs, ddp):
    """kill -9 of the whole job (torchrun and both workers) after a checkpoint, then the same command
    again: it resumes there and ends with exactly the weights of the uninterrupted run."""
    run_dir = _run_dir(tmp_path, study_inputs, micro_batch_size=1)
    checkpoints = _out(run_dir) / "checkpoints"
    job = subprocess.Popen(_torchrun(run_dir, 2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list(checkpoints.glob("step-*/state.json")) and job.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
    finally:
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        job.wait()
    assert job.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (_out(run_dir) / "train_summary.json").exists()
    killed_at = int(latest_checkpoint(str(checkpoints)).rsplit("-", 1)[1])
    assert 0 < killed_at < STEPS

    result = subprocess.run(_torchrun(run_dir, 2), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"resumed at step {killed_at} of {STEPS}" in result.stderr
    assert _summary(run_dir)["resumed_from_step"] == killed_at
    # the log is whole, and loss, lr and seen samples are those of the uninterrupted run
    assert [r[:3] + r[4:] for r in _log(run_dir)] == [r[:3] + r[4:] for r in _log(ddp)]
    resumed, uninterrupted = _weights(run_dir), _weights(ddp)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_dag_rejects_fsdp_sizes_that_are_not_study_sizes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"results_dir": str(tmp_path / "results"), "train": {"fsdp_sizes": ["11.2b"]}}))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "train.fsdp_sizes" in result.stdout + result.stderr
