"""E2E loading, causal-LM formatting (labels, padding, truncation) and seeded loaders."""

from __future__ import annotations

import zipfile

import pytest
import torch

from fedsim.errors import InputError
from fedsim.learn.data.e2e import (
    DEFAULT_E2E_ZIP,
    IGNORE_INDEX,
    E2EExamples,
    group_by_mr,
    load_e2e,
    make_loader,
    mr_spread_order,
    prompt_text,
)
from fedsim.learn.loading.models import gpt2_tokenizer

FIRST_TRAIN = (
    "name[The Vaults], eatType[pub], priceRange[more than £30], customer rating[5 out of 5], near[Café Adriatic]",
    "The Vaults pub near Café Adriatic has a 5 star rating.  Prices start at £30.",
)


@pytest.fixture(scope="module")
def e2e():
    return load_e2e()


@pytest.fixture(scope="module")
def tok():
    return gpt2_tokenizer()


def test_shipped_e2e_has_the_official_sizes(e2e):
    assert {k: len(v) for k, v in e2e.items()} == {"train": 42061, "validation": 4672, "test": 4693}
    assert e2e["train"][0] == FIRST_TRAIN
    assert len({mr for mr, _ in e2e["train"]}) == 4862  # unique MRs, as the dataset README says
    assert (DEFAULT_E2E_ZIP.parent / "README.md").is_file()  # the license requires it beside the data


def test_folder_and_zip_give_the_same_pairs(tmp_path):
    with zipfile.ZipFile(DEFAULT_E2E_ZIP) as zf:
        for name in ("devset.csv", "testset_w_refs.csv"):
            (tmp_path / name).write_bytes(zf.read(f"e2e-dataset/{name}"))
    (tmp_path / "trainset.csv").write_text('mr,ref\n"name[A], food[Thai]","A, Thai."\n', encoding="utf-8")
    data = load_e2e(tmp_path)
    assert data["train"] == [("name[A], food[Thai]", "A, Thai.")]
    assert data["validation"] == load_e2e()["validation"]


def test_missing_or_broken_data_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does-not-exist.zip does not exist"):
        load_e2e(tmp_path / "does-not-exist.zip")
    with pytest.raises(InputError, match="trainset.csv not found"):
        load_e2e(tmp_path)
    (tmp_path / "x.zip").write_bytes(b"junk")
    with pytest.raises(InputError, match="neither a folder nor a valid zip"):
        load_e2e(tmp_path / "x.zip")


def test_labels_are_ignored_exactly_on_prompt_and_padding(tok):
    mr, ref = FIRST_TRAIN
    ds = E2EExamples([(mr, ref)], tok, max_len=96)
    item = ds[0]
    ids, prompt_len = ds.encoded(0)
    n = len(ids)
    assert prompt_len == len(tok(prompt_text(mr))["input_ids"]) and n < 96
    assert item["input_ids"].shape == item["labels"].shape == item["attention_mask"].shape == (96,)
    assert item["attention_mask"].tolist() == [1] * n + [0] * (96 - n)
    expected = [IGNORE_INDEX] * prompt_len + ids[prompt_len:] + [IGNORE_INDEX] * (96 - n)
    assert item["labels"].tolist() == expected
    # round trip: the real tokens decode back to the formatted text, the labelled ones to " ref<eos>"
    assert tok.decode(item["input_ids"][:n]) == f"{mr} ||| {ref}<|endoftext|>"
    assert tok.decode(item["input_ids"][prompt_len:n]) == f" {ref}<|endoftext|>"
    assert (item["input_ids"][n:] == tok.pad_token_id).all()


def test_truncation_keeps_fixed_length(tok):
    mr, ref = FIRST_TRAIN
    ds = E2EExamples([(mr, ref)], tok, max_len=40)
    item = ds[0]
    _, prompt_len = ds.encoded(0)
    assert item["attention_mask"].sum() == 40
    assert (item["labels"][:prompt_len] == IGNORE_INDEX).all()
    assert (item["labels"][prompt_len:] == item["input_ids"][prompt_len:]).all()
    with pytest.raises(InputError, match="max_len"):
        E2EExamples([(mr, ref)], tok, max_len=1)


def test_loader_is_seeded_with_full_batches(tok):
    pairs = [(f"name[R{i}]", f"R{i} is a pub.") for i in range(11)]
    ds = E2EExamples(pairs, tok, max_len=16)

    def order(seed):
        loader = make_loader(ds, range(2, 11), batch_size=4, generator=torch.Generator().manual_seed(seed))
        return [b["input_ids"].tolist() for b in loader]

    a, b, c = order(0), order(0), order(1)
    assert a == b and a != c
    assert len(a) == 2 and all(len(batch) == 4 for batch in a)  # 9 examples, b=4: drop_last -> 2 batches
    seen = {tok.decode(row).split(" |||")[0] for batch in a for row in batch}
    assert len(seen) == 8 and seen <= {f"name[R{i}]" for i in range(2, 11)}  # only the given indices
    with pytest.raises(InputError, match="batch_size: 12 is larger"):
        make_loader(ds, range(11), batch_size=12, generator=torch.Generator())


def test_group_by_mr_keeps_first_seen_order():
    pairs = [("b", "1"), ("a", "2"), ("b", "3")]
    assert group_by_mr(pairs) == [("b", ["1", "3"]), ("a", ["2"])]


def test_mr_spread_order_takes_every_mr_before_any_second_reference(e2e):
    pairs = [("b", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("a", "5"), ("b", "6")]
    assert mr_spread_order(pairs) == [0, 1, 3, 2, 4, 5]
    val = e2e["validation"]
    order = mr_spread_order(val)
    assert sorted(order) == list(range(len(val)))  # a permutation
    n_mrs = len(group_by_mr(val))
    assert n_mrs == 547 and len({val[i][0] for i in order[:n_mrs]}) == n_mrs
    assert len({val[i][0] for i in range(256)}) < 40  # the file order: few MRs in the first 256
    for mr, refs in group_by_mr(val)[:20]:  # each MR's references keep their file order
        assert [val[i][1] for i in order if val[i][0] == mr] == refs


def test_eval_order_picks_the_validation_subset(tok):
    from fedsim.learn.config import TrainConfig
    from fedsim.learn.setup import prepare_data

    base = dict(model="tiny-gpt2", seq_len=32, eval_samples=100, train_samples=40, num_clients=2, batch_size=2)
    first = prepare_data(TrainConfig(**base), tok)
    spread = prepare_data(TrainConfig(**base, eval_order="mr_spread"), tok)
    assert list(first.eval_indices) == list(range(100))
    pairs = spread.validation.pairs
    assert len({pairs[i][0] for i in spread.eval_indices}) == 100
    assert list(spread.eval_indices) == mr_spread_order(pairs)[:100]
