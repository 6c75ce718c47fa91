"""``fedsim report``: the docs' results pages are what the committed results give, with their caveats, and the
committed results carry no machine path."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fedsim import report
from fedsim.cli import main
from fedsim.experiments.study.runs import _NOT_THE_RUN
from fedsim.learn.config import config_diff
from fedsim.learn.records import ConvergenceRecord

ROOT = Path(__file__).resolve().parent.parent
RESULTS, PAGES = ROOT / "results", ROOT / "docs" / "results"


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return report.render(RESULTS)


def test_committed_pages_are_regenerated_exactly(pages, tmp_path):
    # Execute: regenerate into a temporary folder
    written = report.write(RESULTS, tmp_path)
    # Assert: the same pages, byte for byte, as those committed
    assert sorted(p.name for p in written) == sorted(p.name for p in PAGES.glob("*.md"))
    for path in written:
        committed = (PAGES / path.name).read_text(encoding="utf-8")
        assert path.read_text(encoding="utf-8") == committed, f"{path.name}: run `fedsim report` and commit"
    assert report.differences(RESULTS, PAGES) == []


def test_check_command_fails_on_a_stale_page(tmp_path, capsys):
    out = tmp_path / "pages"
    assert main(["report", "--results", str(RESULTS), "--out", str(out)]) == 0
    assert main(["report", "--check", "--results", str(RESULTS), "--out", str(out)]) == 0
    page = out / "radio.md"
    page.write_text(page.read_text(encoding="utf-8").replace("537/550", "550/550"), encoding="utf-8")
    assert main(["report", "--check", "--results", str(RESULTS), "--out", str(out)]) == 1
    assert "radio.md: differs" in capsys.readouterr().err


def test_every_page_says_it_is_generated(pages):
    for name, text in pages.items():
        assert text.startswith(report.common.GENERATED), name


def test_radio_page_says_which_units_a_mean_leaves_out(pages):
    text = pages["radio.md"]
    assert "| nr UMi | 537/550 |" in text
    assert "nr UMi: 13 of 550 units are left out" in text


def test_convergence_page_states_the_span_it_measures(pages):
    text = pages["convergence.md"]
    # the "last 20 %" starts at the last evaluation at or before step 38.4 of 48: step 32, a third of the run
    assert "change of val PPL over steps 32-48" in text and "the last 33 % of them" in text
    assert "`eval_samples` = 96 validation examples" in text and "`generate_mrs` = 8 test MRs" in text
    assert "seeds 0, 1, 2" in text
    assert "4,672 examples, 98,383 tokens, 547 MRs" in text


def test_splitft_page_states_sample_counts_and_the_measured_gaps(pages):
    text = pages["splitft.md"]
    assert "`eval_samples` = 8 validation examples and test PPL on `test_samples` = 8" in text
    # r_cut = 4 vs r_cut = r on the same cut: -0.93 % final val PPL at alpha = 1
    assert re.search(r"`same_cut_rcut4` vs `same_cut` \| 1 \| [^|]+\|[^|]+\|[^|]+\| -0\.93 % \|", text)
    assert re.search(r"`adaptive_rcut4` vs `adaptive` \| 10 \| [^|]+\|[^|]+\|[^|]+\| \+1\.82 % \|", text)


def test_paper_figures_overview_matches_a_summary_cell(pages):
    text = pages["paper-figures.md"]
    # fig5's first point: 56.8 % vs a (summary.md), its last: 69.5 %; means vs a 61.27 -> 77.06
    assert "| Fig. 5 | `fig5_bandwidth` | 10 | 100 | 0 | 56.8 to 69.5 % " in text
    assert "61.3 % → 77.1 %" in text


def test_pages_report_no_wall_clock_time(pages):
    for name, text in pages.items():
        assert "wall_s" not in text and "Done in" not in text, name


def _committed(pattern: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / line for line in out.stdout.splitlines()]


def test_rank_study_page_states_the_lr_rule_its_choices_and_what_is_not_claimed(pages, tmp_path):
    text = pages["rank-study.md"]
    assert "the smaller lr on a tie" in text and "seed 100" in text
    # rank 16's plateau val PPL is lowest at lr 3e-3 (4.035 vs 4.074 at 1e-2): chosen, bold, 1.0 % ahead
    assert "| 16 | 5.674 | 4.376 | **4.035** | 4.074 | - | 0.003 | no |" in text
    assert "rank 16: 1.0 %" in text
    # a results folder without the study's records claims nothing about a rank effect
    (tmp_path / "rank_lr_sweep").mkdir()
    empty = report.rank_study.page(tmp_path)
    assert "No records of `scenarios/rank_lr_sweep.toml`" in empty and "nothing is claimed" in empty


def test_rank_plateau_section_says_which_schemes_are_complete(tmp_path):
    """While the plateau study runs, the page says which scheme already has all of its planned runs (its
    verdicts are final) and that the tables are interim; with a run of that scheme missing it claims neither."""
    source = ROOT / "results" / "rank_plateau"
    folder = tmp_path / "rank_plateau"
    (folder / "records").mkdir(parents=True)
    shutil.copy(source / "scenario.json", folder / "scenario.json")
    split_fed = sorted((source / "records").glob("*_split_fed_*.json"))
    assert len(split_fed) == 15  # ranks 1, 4, 16 x seeds 0-4
    for path in [*split_fed, *sorted((source / "records").glob("*_centralized_r1_s0_*.json"))]:
        shutil.copy(path, folder / "records" / path.name)
    text = "\n".join(report.rank_study.study_section(tmp_path, "rank_plateau"))
    assert "Runs committed: 16 of 30" in text and "interim" in text
    assert "split_fed has all 15 of its planned runs, so its rows and their verdicts are final" in text
    assert "centralized has all" not in text
    (folder / "records" / split_fed[0].name).unlink()
    text = "\n".join(report.rank_study.study_section(tmp_path, "rank_plateau"))
    assert "Runs committed: 15 of 30" in text and "interim" in text and "has all" not in text


def _noise_csv(folder: Path, rows: list[tuple[int, int, float]], split_mrs: int | None) -> None:
    """An eval_noise.csv with (examples, MRs, MR-grouped gap %) rows for both model states."""
    import pandas as pd

    (folder / "rank_study").mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        [{"order": "mr_spread", "model_state": state, "examples": n, "mrs": m, "val_ppl": 5.0, "val_ppl_a": 5.0,
          "val_ppl_b": 5.0, "halves_gap_pct": gap, "mr_halves_gap_pct": gap}
         for state in ("pre-trained", "after 24 steps") for n, m, gap in rows]  # fmt: skip
    )
    if split_mrs is not None:
        frame["split_mrs"] = split_mrs
    frame.to_csv(folder / "rank_study" / "eval_noise.csv", index=False)


def test_noise_section_claims_the_whole_split_only_when_the_measurement_spans_every_mr(tmp_path):
    """"Out of reach of the validation split" needs subsets holding every MR of the split, all >= 1 %: not when
    the largest subset measured holds some of the MRs (or the file does not say how many the split has)."""
    _noise_csv(tmp_path, [(256, 28, 8.0), (1024, 129, 5.0)], split_mrs=547)
    text = "\n".join(report.rank_study.noise_section(tmp_path))
    assert "holds 129 of the split's 547 MRs" in text and "out of reach" not in text
    _noise_csv(tmp_path, [(256, 256, 4.0), (547, 547, 3.0), (4672, 547, 2.5)], split_mrs=547)
    text = "\n".join(report.rank_study.noise_section(tmp_path))
    assert "split has 547 MRs" in text and "(N = 547 to 4672" in text and "2.5-3.0 %" in text
    assert "out of reach of the validation split" in text
    _noise_csv(tmp_path, [(256, 256, 4.0), (547, 547, 0.9)], split_mrs=547)
    text = "\n".join(report.rank_study.noise_section(tmp_path))
    assert "out of reach" not in text and "under 1 % in both model states is 547" in text
    assert "parity halves (which share MRs): under 1 % in both model states from N = 547 (worse state 0.900 %)" in text
    _noise_csv(tmp_path, [(1024, 129, 5.0)], split_mrs=None)  # an older file: no claim about the split
    text = "\n".join(report.rank_study.noise_section(tmp_path))
    assert "out of reach" not in text and "split has" not in text


def test_no_machine_path_in_committed_results():
    machine_path = re.compile(r'"/(?:work|home|root|tmp|Users|mnt|opt|var)/')
    files = [p for p in _committed("results") if p.suffix in {".json", ".csv", ".md"} and p.is_file()]
    assert files
    for path in files:
        assert not machine_path.search(path.read_text(encoding="utf-8")), path


def test_study_records_load_and_still_count_as_their_runs():
    paths = [p for p in _committed("results") if p.suffix == ".json" and p.parent.name == "records"]
    assert len(paths) >= 30
    for path in paths:
        record = ConvergenceRecord.load(path)  # the sha256, where a record has one, still verifies
        cfg = record.config or {}
        assert not str(cfg.get("checkpoint_path") or "").startswith("/"), path
        # where the study puts the checkpoint is not part of the run: a rerun keeps the record
        moved = {**cfg, "checkpoint_path": "elsewhere/checkpoint.pt"}
        assert config_diff(cfg, moved, _NOT_THE_RUN) == [], path


def test_provenance_comes_from_meta_json():
    meta = json.loads((RESULTS / "convergence_study" / "meta.json").read_text(encoding="utf-8"))
    line = report.common.provenance(RESULTS / "convergence_study", RESULTS)
    assert meta["written_utc"] in line and meta["git_revision"][:12] in line
