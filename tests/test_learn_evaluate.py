"""Perplexity against a hand computation; BLEU and ROUGE-L on hand-made strings; greedy generation."""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.learn.data.e2e import E2EExamples, make_loader
from fedsim.learn.evaluate import corpus_bleu, evaluate_generation, greedy_generate, perplexity, rouge_l
from fedsim.learn.loading.models import tiny_model

PAIRS = [
    ("name[The Eagle], food[French]", "The Eagle serves French food."),
    ("name[Zizzi], area[riverside]", "Zizzi is by the riverside."),
    ("name[The Eagle], food[French]", "French food is served at The Eagle."),
    ("name[Aromi], eatType[pub], near[Café Sicilia]", "Aromi is a pub near Café Sicilia."),
]


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("gpt2", seed=3)


def _forward_fn(model):
    """A bare logits function, as a split model would offer."""

    def forward(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits

    return forward


def _loader(tok, max_len=24):
    ds = E2EExamples(PAIRS, tok, max_len=max_len)
    return ds, make_loader(
        ds, range(len(ds)), batch_size=2, generator=torch.Generator().manual_seed(0), shuffle=False
    )


def test_perplexity_matches_hand_computation(tiny):
    model, tok = tiny
    ds, loader = _loader(tok)
    # by hand: per example, -log p(token t | tokens < t) for every reference token t, one position at a time
    total, count = 0.0, 0
    for i in range(len(ds)):
        ids, prompt_len = ds.encoded(i)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
        for t in range(max(prompt_len, 1), len(ids)):
            total -= float(logp[t - 1, ids[t]])
            count += 1
    expected = math.exp(total / count)
    assert perplexity(model, loader) == pytest.approx(expected, rel=1e-5)
    forward = _forward_fn(model)
    assert perplexity(forward, loader) == pytest.approx(expected, rel=1e-5)


def test_uniform_model_has_perplexity_equal_to_vocab_size(tiny):
    _, tok = tiny
    _, loader = _loader(tok)

    def uniform(input_ids, attention_mask):
        return torch.zeros(*input_ids.shape, 50257)

    assert perplexity(uniform, loader) == pytest.approx(50257, rel=1e-6)  # float32 log-softmax


def test_perplexity_restores_training_mode(tiny):
    model, tok = tiny
    _, loader = _loader(tok)
    model.train()
    perplexity(model, loader, max_batches=1)
    assert model.training
    model.eval()


def test_bleu_hand_values():
    # 1-4 gram precisions 5/6, 3/5, 2/4, 1/3, equal lengths (BP = 1)
    assert corpus_bleu(["the cat sat on the mat"], [["the cat sat on a mat"]]) == pytest.approx(
        100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-9
    )
    # two references: counts are clipped by the max over references -> 5/6, 5/5, 3/4, 1/3
    assert corpus_bleu(
        ["the cat sat on the mat"], [["the cat sat on a mat", "a cat is on the mat"]]
    ) == pytest.approx(100 * (5 / 6 * 1 * 3 / 4 * 1 / 3) ** 0.25, abs=1e-9)
    assert corpus_bleu(["a b c d"], [["w x y z", "a b c d"]]) == pytest.approx(100.0)


def test_bleu_with_a_variable_number_of_references():
    hyps = ["the cat sat on the mat", "there is a dog in the park today"]
    refs = [["the cat sat on a mat", "a cat is on the mat"], ["a dog is in the park today"]]
    # duplicating a reference changes neither the clipping nor the closest length: an equivalent call
    padded = [refs[0], refs[1] * 2]
    import sacrebleu

    expected = sacrebleu.corpus_bleu(hyps, [list(s) for s in zip(*padded, strict=True)]).score
    assert corpus_bleu(hyps, refs) == pytest.approx(expected, abs=1e-9)


def test_rouge_l_hand_values():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5: P = 5/6, R = 1, F = 10/11
    assert rouge_l(["the cat sat on the mat"], [["the cat on the mat"]]) == pytest.approx(100 * 10 / 11)
    # best of the references, then the mean over hypotheses
    two = rouge_l(["the cat sat on the mat", "a b"], [["zzz", "the cat on the mat"], ["a b"]])
    assert two == pytest.approx(100 * (10 / 11 + 1) / 2)


def test_greedy_generation_same_with_and_without_kv_cache(tiny):
    model, tok = tiny
    prompts = [
        tok("name[A] |||")["input_ids"],
        tok("name[B] |||")["input_ids"],
        tok("name[Cafe X], food[Thai] |||")["input_ids"],
    ]
    forward = _forward_fn(model)
    with_cache = greedy_generate(model, tok, prompts, max_new_tokens=6, batch_size=2)
    without = greedy_generate(forward, tok, prompts, max_new_tokens=6, batch_size=1)
    assert with_cache == without
    assert all(0 < len(o) <= 6 for o in with_cache)


def test_evaluate_generation_groups_by_mr(tiny):
    model, tok = tiny
    result = evaluate_generation(model, tok, PAIRS, max_new_tokens=4)
    assert result["num_mrs"] == 3
    assert result["samples"][0]["references"] == [
        "The Eagle serves French food.",
        "French food is served at The Eagle.",
    ]
    assert 0.0 <= result["bleu"] <= 100.0 and 0.0 <= result["rouge_l"] <= 100.0
    assert evaluate_generation(model, tok, PAIRS, max_new_tokens=4, limit=1)["num_mrs"] == 1
