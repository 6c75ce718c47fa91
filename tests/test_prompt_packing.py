"""Shared-prompt packing for evaluation: the packed NLL equals the plain per-example loop on every model
family (through the model's own forward and through the split parts), the segment rule is what makes it so,
and the packing scores every labelled token exactly once (hand layout and hypothesis properties)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from learn_tiny import VOCAB, SyntheticLM, tiny_lm, tiny_opt

from fedsim.learn.data.batches import collate
from fedsim.learn.data.prompt_packing import pack_shared_prompts, split_example
from fedsim.learn.federated.systems import _eval_nll, _example_nll
from fedsim.learn.split.parts import shared_prompt_mask, split_model, token_nll, token_nll_per_example


def _example(prompt: list[int], ref: list[int], width: int) -> dict:
    ids = (prompt + ref)[:width]
    x = torch.zeros(width, dtype=torch.long)
    x[: len(ids)] = torch.tensor(ids)
    mask = torch.zeros(width, dtype=torch.long)
    mask[: len(ids)] = 1
    labels = x.clone()
    labels[mask == 0] = -100
    labels[: len(prompt)] = -100
    return {"input_ids": x, "attention_mask": mask, "labels": labels}


class SharedPrompts(torch.utils.data.Dataset):
    """E2E-like: ``n`` examples over ``prompts`` distinct random prompts, each with a random reference;
    some are truncated at ``width``, one to its prompt only (no scored token)."""

    def __init__(self, n: int = 40, prompts: int = 5, width: int = 24, seed: int = 0):
        g = torch.Generator().manual_seed(seed)

        def draw(lo: int, hi: int) -> list[int]:
            length = int(torch.randint(lo, hi, (1,), generator=g))
            return torch.randint(1, VOCAB, (length,), generator=g).tolist()

        heads = [draw(2, 9) for _ in range(prompts)]
        self.items = [_example(heads[i % prompts], draw(1, 20), width) for i in range(n)]
        self.items.append(_example(list(range(1, width + 1)), [5, 6], width))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _plain_nll(model, dataset) -> tuple[float, int]:
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(dataset), 4):
            batch = collate(dataset, range(start, min(start + 4, len(dataset))))
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            nll, n = token_nll(logits, batch["labels"])
            total, count = total + float(nll), count + n
    return total, count


MODELS = {
    "gpt2": lambda: tiny_lm("gpt2"),
    "llama": lambda: tiny_lm("llama"),
    "opt": lambda: tiny_opt(),
    "opt-350m layout": lambda: tiny_opt(post_norm=True),
}


@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("data", ["shared prompts", "distinct prompts"])
def test_packed_nll_equals_the_plain_loop_through_the_model_and_through_the_split_parts(family, data):
    model = MODELS[family]().eval()
    dataset = SharedPrompts() if data == "shared prompts" else SyntheticLM(30, 16)
    want, count = _plain_nll(model, dataset)
    indices = np.arange(len(dataset))

    def whole(ids, mask, position_ids=None):
        return model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits

    client, server = split_model(model, 2)

    def split(ids, mask, position_ids=None):
        return server(client(ids, mask, position_ids=position_ids), mask, position_ids=position_ids)

    for forward in (whole, split):
        got, n = _eval_nll(forward, model.config, dataset, indices, 3)
        assert n == count
        assert got == pytest.approx(want, rel=1e-5)  # float summation order only


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_packed_nll_per_example_equals_each_examples_own_nll_in_any_index_order(family):
    """What ``fedsim evaluate`` and ``benchmarks/eval_noise.py`` pair runs on: per example, in the order of
    ``indices`` (shuffled here, with a repeat), the packed NLL is the example's own unpacked NLL."""
    model = MODELS[family]().eval()
    dataset = SharedPrompts()
    indices = np.random.default_rng(0).permutation(len(dataset))[:30]
    indices = np.append(indices, indices[0])  # an example listed twice is scored twice
    batch = collate(dataset, indices)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    want, count = token_nll_per_example(logits, batch["labels"])

    def whole(ids, mask, position_ids=None):
        return model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits

    got, n = _example_nll(whole, model.config, dataset, indices, 3)
    assert got.dtype == np.float64 and n.tolist() == count.tolist()
    np.testing.assert_allclose(got, want.double().numpy(), rtol=1e-5, atol=1e-6)
    assert got[-1] == pytest.approx(got[0], rel=1e-6) and (got[count.numpy() == 0] == 0).all()


def test_without_the_segment_rule_references_would_see_each_other_and_the_nll_would_change():
    """The check above can fail: packed rows under the plain causal mask give an NLL far outside its 1e-5
    tolerance (a random tiny model attends almost uniformly, so the shift is small but real)."""
    model = tiny_lm("llama").eval()
    dataset = SharedPrompts()
    want, _ = _plain_nll(model, dataset)
    total = 0.0
    with torch.no_grad():
        for batch in pack_shared_prompts(dataset, range(len(dataset)), max_tokens=72):
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids).logits  # fmt: skip
            total += float(torch.nn.functional.cross_entropy(
                logits[batch.rows, batch.cols], batch.targets, reduction="sum"))  # fmt: skip
    assert abs(total - want) / want > 1e-4


def test_packed_layout_by_hand():
    items = [_example([5, 6, 7], [8, 9], 8), _example([5, 6, 7], [10], 8), _example([4], [3, 2], 8)]
    (batch,) = pack_shared_prompts(items, [0, 1, 2], max_tokens=100)
    # rows sorted by length: [4 | 3 2] (3 tokens) before [5 6 7 | 8 9 | 10] (6 tokens)
    assert batch.input_ids.tolist() == [[4, 3, 2, 0, 0, 0], [5, 6, 7, 8, 9, 10]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 0, 0], [0, 1, 2, 3, 4, 3]]
    assert batch.segments.tolist() == [[0, 1, 1, -1, -1, -1], [0, 0, 0, 1, 1, 2]]
    # each reference's first token is predicted from the prompt's last position, the others from the token before
    scored = list(zip(batch.rows.tolist(), batch.cols.tolist(), batch.targets.tolist(), strict=True))
    assert scored == [(0, 0, 3), (0, 1, 2), (1, 2, 8), (1, 3, 9), (1, 2, 10)]
    assert batch.examples.tolist() == [2, 2, 0, 0, 1]  # each token's example, by position in indices


def test_the_mask_lets_a_token_see_the_prompt_and_its_own_reference_only():
    model = tiny_lm("llama")
    model.config._attn_implementation = "eager"  # an additive float mask: 0 where attended
    segments = torch.tensor([[0, 0, 1, 1, 2, -1]])
    mask = shared_prompt_mask(model.config, torch.tensor([[1, 1, 1, 1, 1, 0]]), segments)
    seen = (mask[0, 0] == 0).int().tolist()
    assert seen == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],
        [1, 1, 0, 0, 0, 0],  # a padding query sees the prompt, so its softmax row is never empty
    ]


def test_an_example_without_a_scored_token_is_left_out():
    assert split_example(_example([1, 2, 3, 4], [9], 4)) is None


@settings(max_examples=60, deadline=None)
@given(
    prompts=st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=6), min_size=1, max_size=4),
    picks=st.lists(st.tuples(st.integers(0, 3), st.lists(st.integers(1, 50), min_size=1, max_size=9)),
                   min_size=1, max_size=25),  # fmt: skip
    max_tokens=st.integers(1, 60),
)
def test_every_labelled_token_is_scored_once_and_budgets_hold(prompts, picks, max_tokens):
    items = [_example(prompts[p % len(prompts)], ref, 12) for p, ref in picks]
    batches = pack_shared_prompts(items, range(len(items)), max_tokens=max_tokens)
    want = sorted(t for item in items for t in item["labels"][1:].tolist() if t != -100)
    got = sorted(t for b in batches for t in b.targets.tolist())
    assert got == want
    for b in batches:
        rows, width = b.input_ids.shape
        assert rows == 1 or rows * width <= max_tokens
        # a prediction from the prompt comes from its last position; any other from the token before the
        # target, in the target's own segment
        seg = b.segments[b.rows, b.cols]
        prompt, inner = seg == 0, seg != 0
        assert (b.segments[b.rows[prompt], b.cols[prompt] + 1] > 0).all()
        assert (b.segments[b.rows[inner], b.cols[inner] + 1] == seg[inner]).all()
        assert (b.input_ids[b.rows[inner], b.cols[inner] + 1] == b.targets[inner]).all()
        for r in range(rows):  # within the budget, or a single reference behind its prompt
            assert int(b.attention_mask[r].sum()) <= max_tokens or int(b.segments[r].max()) == 1
