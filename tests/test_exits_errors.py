"""Every way out is clean: bad input is one line and exit 2 (checked before work starts, nothing written), a
user's own exception keeps its traceback and says where it happened and how to reproduce it alone, and every
exception fedsim raises survives being re-created from its arguments (SimPy) and pickled (multiprocessing,
Ray)."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import re
import shlex
import signal
import textwrap

import pytest
import simpy
from fault_helpers import run_args, spawn_fedsim, tracebacks, write_scenario
from study_helpers import tiny_study

import fedsim
from fedsim.cli import main
from fedsim.experiments.montecarlo.tasks import SchemeFailed
from fedsim.interrupt import Interrupted
from fedsim.learn import limits
from fedsim.learn.config import TrainConfig

LIVE = """name = "limits"
[montecarlo]
drops = 0
[live]
ranks = [2]
[live.training]
model = "tiny-gpt2"
num_clients = 2
steps = 2
seq_len = {seq_len}
batch_size = 2
cut = 1
"""


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert tracebacks(err) == 0, err
    return lines[0]


# --- exceptions re-created from their arguments --------------------------------------------------------


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_is_recreated_from_its_args_pickled_and_rethrown_by_simpy(sig, code):
    exc = Interrupted(sig)
    for copy in (type(exc)(*exc.args), pickle.loads(pickle.dumps(exc))):
        assert (copy.signum, copy.name, copy.exit_code) == (int(sig), signal.Signals(sig).name, code)

    def process(env):  # SimPy re-raises a process's exception as type(exc)(*exc.args)
        yield env.timeout(1)
        raise Interrupted(sig)

    env = simpy.Environment()
    env.process(process(env))
    with pytest.raises(Interrupted) as info:
        env.run()
    assert info.value.exit_code == code


def _fedsim_exceptions() -> list[type[BaseException]]:
    found = set()
    for info in pkgutil.walk_packages(fedsim.__path__, "fedsim."):
        if info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - an optional dependency (sionna) or a launcher
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("fedsim")
            ):
                found.add(value)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_every_fedsim_exception_survives_recreation_from_its_args_and_pickling():
    samples = {Interrupted: (2,), SchemeFailed: ("mine", 1, 2, "ValueError: no", "Traceback ...")}
    classes = _fedsim_exceptions()
    assert Interrupted in classes and SchemeFailed in classes
    for cls in classes:
        exc = cls(*samples.get(cls, ("a message",)))
        for copy in (type(exc)(*exc.args), pickle.loads(pickle.dumps(exc))):
            assert type(copy) is cls and str(copy) == str(exc), cls


# --- a user's scheme that raises ------------------------------------------------------------------------

USER = """
class Broken:
    name = "broken"
    description = "raises, as a user's scheme with a bug does"

    def allocate(self, problem, rng):
        raise ValueError("my scheme has a bug")
"""


@pytest.fixture
def user_scheme(tmp_path, monkeypatch):
    name = f"user_broken_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:Broken"


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_a_user_scheme_that_raises_keeps_its_traceback_and_names_scheme_point_drop_and_the_command(
    tmp_path, capsys, user_scheme, executor
):
    scenario = write_scenario(tmp_path, 3)
    scenario.write_text(
        scenario.read_text().replace('names = ["proposed", "a"]', f'names = ["proposed", "{user_scheme}"]')
    )
    assert main(run_args(scenario, tmp_path / "out", "--executor", executor, "--workers", "2")) == 1
    err = capsys.readouterr().err
    assert tracebacks(err) == 1 and 'raise ValueError("my scheme has a bug")' in err  # the user's own
    assert "concurrent.futures" not in err and "RemoteTraceback" not in err
    last = err.strip().splitlines()[-1]
    match = re.search(r"sweep point (\d+), drop (\d+); reproduce it alone with `([^`]+)`", last)
    assert last.startswith(
        f"fedsim run: error: scheme '{user_scheme}' raised ValueError: my scheme has a bug"
    )
    assert match, last
    point, drop, command = int(match.group(1)), int(match.group(2)), shlex.split(match.group(3))
    assert command == ["fedsim", "optimize", str(scenario), "--point", str(point), "--drop", str(drop),
                       "--scheme", user_scheme]  # fmt: skip
    with pytest.raises(ValueError, match="my scheme has a bug"):  # the command raises it alone, as it is
        main(command[1:])


# --- bad input: one line, exit 2, before anything is written -------------------------------------------


def test_out_naming_a_file_or_a_path_under_a_file_is_one_line(tmp_path, capsys):
    scenario = write_scenario(tmp_path, 2)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for out in (afile, afile / "sub"):
        assert main(run_args(scenario, out)) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"--out {out}" in line and "not a folder" in line
    assert afile.read_text() == "mine"


def test_train_out_naming_a_file_and_simulate_trace_into_a_folder_are_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(["train", "--model", "tiny-gpt2", "--out", str(afile), "--no-progress"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(afile) in line and line.startswith("fedsim train: error:")
    scenario = write_scenario(tmp_path, 2)
    assert main(["simulate", str(scenario), "--point", "0", "--drop", "0", "--trace-csv", str(tmp_path)]) == 2
    assert "is a folder" in _one_line(capsys.readouterr().err)


def test_a_sequence_length_beyond_the_models_positions_is_refused_before_training(tmp_path):
    proc = spawn_fedsim(["train", "--model", "tiny-gpt2", "--seq-len", "100000", "--out", str(tmp_path / "o"),
                         "--records-dir", str(tmp_path / "r"), "--no-progress"])  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    line = _one_line(err)
    assert "seq_len 100000" in line and "at most 256 positions" in line
    assert not (tmp_path / "r").exists()


def test_a_live_run_beyond_the_positions_or_the_memory_is_refused_with_its_numbers(
    tmp_path, capsys, monkeypatch
):
    path = tmp_path / "limits.toml"
    path.write_text(LIVE.format(seq_len=300))
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "at most 256 positions" in _one_line(capsys.readouterr().err)
    path.write_text(LIVE.format(seq_len=64))
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 5e6)
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert re.search(r"needs about [\d.]+ [MG]B \(weights .*\) but 5\.0 MB is available", line), line
    assert not (tmp_path / "o").exists()
    monkeypatch.setenv("FEDSIM_MEMORY_CHECK", "off")
    limits.check_run(TrainConfig(model="tiny-gpt2", seq_len=64, batch_size=2, num_clients=2))


def test_the_memory_estimate_grows_with_the_sequence_and_covers_smollm2_at_100000_tokens():
    config = limits.model_config("smollm2-135m")
    assert limits.position_limit(config) == 8192
    from fedsim.core.memory import evaluation_memory_bytes, training_memory_bytes

    small = training_memory_bytes(config, num_clients=3, batch_size=2, seq_len=64, rank=8)
    big = training_memory_bytes(config, num_clients=3, batch_size=2, seq_len=8192, rank=8)
    assert 0.5e9 < small["total"] < 3e9  # the quickstart's live run: about 1.2 GB
    assert big["total"] > 100e9 and big["weights"] == small["weights"]
    assert evaluation_memory_bytes(config, batch_size=6, seq_len=64)["total"] < small["total"]


def test_a_study_whose_checkpoints_do_not_fit_on_the_disk_is_refused_before_it_starts(
    tmp_path, capsys, monkeypatch
):
    path = tmp_path / "study.toml"
    path.write_text(tiny_study(4, seeds=(0,), ranks=(1, 2)))
    monkeypatch.setattr(limits, "free_disk_bytes", lambda folder: 1000.0)
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "checkpoints of 2 training run(s) need about" in line and "free there" in line
    assert not (tmp_path / "o").exists()
