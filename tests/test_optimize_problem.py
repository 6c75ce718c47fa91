"""Malformed problems raise a one-line InputError; well-formed ones without a finite solution return
status "infeasible" with no NaN anywhere; the JSON record recomputes the delay independently."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from optimize_helpers import make_problem

from fedsim.errors import InputError
from fedsim.optimize import brute_force, optimize


def _with_link(problem, name, **changes):
    drop = dataclasses.replace(
        problem.drop, **{name: dataclasses.replace(getattr(problem.drop, name), **changes)}
    )
    return dataclasses.replace(problem, drop=drop)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda p: _with_link(p, "main", num_subchannels=4), "num_subchannels_main must be >= num_clients"),
        (lambda p: _with_link(p, "fed", p_th_w=0.0), "p_th_fed_w"),
        (lambda p: _with_link(p, "main", p_th_w=float("nan")), "p_th_main_w"),
        (lambda p: dataclasses.replace(p, drop=dataclasses.replace(p.drop, p_max_w=np.zeros(5))), "p_max_w"),
        (lambda p: dataclasses.replace(p, rounds_by_rank={}), "rounds_by_rank"),
        (lambda p: dataclasses.replace(p, rounds_by_rank={0: 100.0}), "ranks must be integers >= 1"),
        (lambda p: dataclasses.replace(p, rounds_by_rank={4: -1.0}), r"E\(4\)"),
        (lambda p: dataclasses.replace(p, batch_size=0), "batch_size"),
        (lambda p: dataclasses.replace(p, local_iterations=0), "local_iterations"),
    ],
)
def test_malformed_problems_raise_input_error(change, match):
    problem = change(make_problem(0))
    with pytest.raises(InputError, match=match) as info:
        optimize(problem)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError):
        brute_force(problem)


def test_unknown_power_solver():
    with pytest.raises(InputError, match="power_solver"):
        optimize(make_problem(0), power_solver="magic")


def test_brute_force_refuses_what_it_cannot_enumerate():
    with pytest.raises(InputError, match="compositions"):
        brute_force(make_problem(0, num_clients=10, num_subchannels_main=60))
    with pytest.raises(InputError, match="flat"):
        brute_force(make_problem(0, fading=True))
    with pytest.raises(InputError, match="common cut"):
        brute_force(dataclasses.replace(make_problem(0), per_client_cuts=True))


def _assert_no_nan(obj):
    if isinstance(obj, float):
        assert not math.isnan(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _assert_no_nan(v)
    elif isinstance(obj, list):
        for v in obj:
            _assert_no_nan(v)


@pytest.mark.parametrize("scheme", ["proposed", "a", "b", "c", "d"])
def test_client_without_channel_is_infeasible_not_nan(scheme):
    problem = make_problem(0)
    gain = problem.drop.main.gain.copy()
    gain[2] = 0.0  # well formed, but client 2 can never upload its activations
    problem = _with_link(problem, "main", gain=gain)
    result = optimize(problem, scheme, rng=np.random.default_rng(0))
    assert result.status == "infeasible"
    assert math.isinf(result.delays.total_s)
    for name in result.delays.__dataclass_fields__:
        assert not np.any(np.isnan(np.asarray(getattr(result.delays, name), dtype=float)))
    record = result.to_dict()
    _assert_no_nan(record)
    json.dumps(record, allow_nan=False)
    assert record["delays"]["total_s"] is None


def _independent_total_s(rec: dict) -> float:
    """Eqs. (8)-(17) recomputed from the JSON record alone, with plain Python loops."""
    p, a = rec["problem"], rec["allocation"]
    drop, w = p["drop"], p["workload"]
    b, iters = p["batch_size"], p["local_iterations"]
    k = len(drop["p_max_w"])
    rank = a["ranks"][0][0]
    e = p["rounds_by_rank"][str(rank)]

    def rate(link, owner, psd, c):
        total = 0.0
        for i, o in enumerate(owner):
            if o == c:
                g = link["gain"][c] if not isinstance(link["gain"][c], list) else link["gain"][c][i]
                total += link["subchannel_hz"] * math.log2(1 + psd[i] * g / link["noise_psd_w_hz"])
        return total

    t1 = t2 = t3 = 0.0
    server = 0.0
    for c in range(k):
        cut = a["cuts"][c]
        cf = sum(w["fwd_flops"][j] + rank * w["lora_fwd_flops_per_rank"][j] for j in range(cut))
        cb = sum(w["bwd_flops"][j] + rank * w["lora_bwd_flops_per_rank"][j] for j in range(cut))
        sf = sum(w["fwd_flops"][j] + rank * w["lora_fwd_flops_per_rank"][j] for j in range(cut, 12))
        sb = sum(w["bwd_flops"][j] + rank * w["lora_bwd_flops_per_rank"][j] for j in range(cut, 12))
        server += b * (sf + w["head_fwd_flops"] + sb + w["head_bwd_flops"]) / drop["server_flops_per_s"]
        f = drop["client_flops_per_s"][c]
        t_a = b * w["act_bits"][cut - 1] / rate(drop["main"], a["owner_main"], a["psd_main_w_hz"], c)
        t_u = (
            rank
            * sum(w["lora_bits_per_rank"][:cut])
            / rate(drop["fed"], a["owner_fed"], a["psd_fed_w_hz"], c)
        )
        t1, t2, t3 = max(t1, b * cf / f + t_a), max(t2, b * cb / f), max(t3, t_u)
    return e * (iters * (t1 + server + t2) + t3)


@pytest.mark.parametrize("scheme", ["proposed", "a"])
def test_json_record_recomputes_the_delay(scheme):
    problem = dataclasses.replace(make_problem(8, server_cycles=3e9), per_client_cuts=True)
    result = optimize(problem, scheme, rng=np.random.default_rng(1))
    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert _independent_total_s(record) == pytest.approx(result.delays.total_s, rel=1e-10)
    assert record["delays"]["total_s"] == pytest.approx(result.delays.total_s, rel=1e-15)
    power = np.bincount(
        result.allocation.owner_main,
        weights=result.allocation.psd_main_w_hz * problem.drop.main.subchannel_hz,
    )
    assert np.all(power <= 0.2 * (1 + 1e-12)) and power.sum() <= 0.6 * (1 + 1e-12)
