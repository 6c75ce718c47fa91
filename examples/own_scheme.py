"""Add your own allocation scheme and sweep it against FedsLLM's proposed scheme and baseline (a).

The scheme below, "equal", is what a simple system would do: every client gets the same number of
subchannels on both links at the baselines' uniform power (no power control), and the cut and LoRA rank
are then chosen by trying every (cut, rank) pair. It is defined here, outside the fedsim package, and
plugs in through the registry; a scenario file could name it as "own_scheme:EqualShare" instead.

    python examples/own_scheme.py                 # 20 drops per bandwidth, about half a minute
    python examples/own_scheme.py --drops 2       # the setting examples/expected/own_scheme.txt shows
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from fedsim import api
from fedsim.core.allocation import Allocation, uniform_ranks
from fedsim.optimize.power import uniform_psd

ROOT = Path(__file__).resolve().parents[1]


class EqualShare:
    """Equal subchannel counts, uniform power; the best (cut, rank) for them by exhaustive search."""

    name = "equal"
    description = "equal subchannel counts at uniform power (no power control); cut and rank by search"

    def allocate(self, problem: api.Problem, rng: np.random.Generator) -> api.Result:
        drop, k = problem.drop, problem.drop.num_clients
        j = problem.workload.num_layers
        owner_main = np.arange(drop.main.num_subchannels) % k  # round robin: counts differ by at most one
        owner_fed = np.arange(drop.fed.num_subchannels) % k
        base = Allocation(
            owner_main=owner_main,
            owner_fed=owner_fed,
            psd_main_w_hz=uniform_psd(drop.main, owner_main, drop.p_max_w),
            psd_fed_w_hz=uniform_psd(drop.fed, owner_fed, drop.p_max_w),
            cuts=np.ones(k, dtype=int),
            ranks=uniform_ranks(k, j, problem.ranks[0]),
        )
        tried = [
            api.evaluate(
                problem, replace(base, cuts=np.full(k, cut), ranks=uniform_ranks(k, j, rank)), self.name
            )
            for cut, rank in itertools.product(range(1, j + 1), problem.ranks)
        ]
        return min(tried, key=lambda result: result.delays.total_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=20, help="Monte Carlo drops per bandwidth")
    parser.add_argument("--out", default=None, help="results folder (default: a temporary one)")
    args = parser.parse_args(argv)

    api.register_scheme(EqualShare, replace=True)
    scenario = api.load_scenario(
        ROOT / "scenarios" / "fig5_bandwidth.toml",
        [
            f"montecarlo.drops={args.drops}",
            "sweep.axes={'system.bandwidth_main_hz' = [5e6, 20e6, 50e6]}",
            "schemes.names=['proposed', 'a', 'equal']",
        ],
    )
    out = Path(args.out or tempfile.mkdtemp(prefix="fedsim_own_scheme_"))
    rows, folder = api.run(scenario, executor="serial", out=out, figures=False)

    hours = rows.assign(hours=rows["total_s"] / 3600).pivot_table(
        index="system.bandwidth_main_hz", columns="scheme", values="hours", aggfunc="mean"
    )[["proposed", "equal", "a"]]
    hours.index = [f"{b / 1e6:g} MHz" for b in hours.index]
    print(f"Mean total training delay [h] over {args.drops} drops (common drops for every scheme):")
    print(hours.round(2).to_string())
    gain = 100 * (1 - hours["proposed"] / hours["equal"])
    print("proposed vs equal: " + ", ".join(f"{b} {g:.1f} % lower" for b, g in gain.items()))
    print(f"scheme 'equal': {api.get_scheme('equal').description}")


if __name__ == "__main__":
    main()
