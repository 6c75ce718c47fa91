"""A scheme that optimises with the Shannon rate as a proxy, then is evaluated under the drop's real radio.

``ShannonProxy`` answers "what does it cost to design the allocation with the paper's rate model when the
radio is really 5G NR?": it runs the proposed BCD on a copy of the drop whose links use the Shannon rate
(same gains, subchannel bandwidth and noise PSD), and reports the delays of those decisions under the
drop's own rate model (``fedsim.optimize.schemes.evaluate``). On a paper drop it equals "proposed".
Name it in a scenario as ``"fedsim.optimize.proxy:ShannonProxy"``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fedsim.optimize.problem import Problem, Result


def shannon_proxy(problem: Problem) -> Problem:
    """The problem with every link's rate model replaced by the paper's Shannon rate."""
    drop = problem.drop
    proxy = dataclasses.replace(
        drop, main=dataclasses.replace(drop.main, rate=None), fed=dataclasses.replace(drop.fed, rate=None)
    )
    return dataclasses.replace(problem, drop=proxy)


class ShannonProxy:
    """Proposed BCD on the Shannon proxy of the drop, evaluated under the drop's own radio."""

    name = "proposed_shannon_proxy"
    description = (
        "the proposed BCD run with the Shannon rate as a proxy for the radio (same gains and bandwidths), "
        "its decisions then evaluated under the drop's own rate model"
    )

    def allocate(self, problem: Problem, rng: np.random.Generator) -> Result:
        from fedsim.optimize import optimize
        from fedsim.optimize.schemes import evaluate

        proxy = optimize(shannon_proxy(problem), "proposed")
        return evaluate(
            problem,
            proxy.allocation,
            self.name,
            status=proxy.status,
            solver_status={
                **proxy.solver_status,
                "evaluated_under": problem.drop.main.rate.name if problem.drop.main.rate else "shannon",
            },
            iterations=proxy.iterations,
        )
