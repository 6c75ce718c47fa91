"""Plug in your own path-loss model through fedsim's radio-model interface (``fedsim.radio``).

The radio model below keeps the paper's placement, shadowing and client compute (it draws the paper's
drop, so every drop is the same one the paper radio sees) and replaces only the path loss: a
log-distance model PL(d) = FSPL(1 m, f) + 10 n log10(d / 1 m) with exponent n = 3.5 at 2 GHz, instead of
128.1 + 37.6 log10(d/km). A radio model is any object with ``name``, ``description`` and
``draw_drop(system, radio, rng) -> Drop``; a scenario names it in ``[radio] model`` (registered name,
"package.module:Class" or a ``fedsim.radios`` entry point).

    python examples/path_loss.py                 # 20 drops per bandwidth
    python examples/path_loss.py --drops 2       # the setting examples/expected/path_loss.txt shows
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from fedsim import api
from fedsim.core.system import draw_drop
from fedsim.radio import register_radio

ROOT = Path(__file__).resolve().parents[1]
SPEED_OF_LIGHT_M_S = 299_792_458.0


def log_distance_db(distance_m: np.ndarray, exponent: float, frequency_hz: float) -> np.ndarray:
    """Path loss [dB]: free space at 1 m, then ``10 * exponent * log10(d / 1 m)``; (K,) from (K,) [m]."""
    fspl_1m_db = 20 * np.log10(4 * np.pi * frequency_hz / SPEED_OF_LIGHT_M_S)
    return fspl_1m_db + 10 * exponent * np.log10(np.maximum(distance_m, 1.0))


class LogDistanceRadio:
    """The paper's drop with a log-distance path loss (n = 3.5 at 2 GHz); shadowing and gains kept."""

    name = "logdist"
    description = "log-distance path loss, exponent 3.5 at 2 GHz (free space at 1 m); paper shadowing"
    exponent, frequency_hz = 3.5, 2e9

    def draw_drop(self, system, radio, rng: np.random.Generator):
        drop = draw_drop(system, rng)  # the paper's drop: positions, shadowing, compute, antenna gains
        antenna = 10 ** (
            (system.gain_client_dbi + np.array([system.gain_main_dbi, system.gain_fed_dbi])) / 10
        )

        def gain(distance_m, shadow_db, antenna_gain):
            loss_db = log_distance_db(distance_m, self.exponent, self.frequency_hz) + shadow_db
            return antenna_gain * 10 ** (-loss_db / 10)

        main = gain(drop.distance_main_m, drop.shadow_main_db, antenna[0])
        fed = gain(drop.distance_fed_m, drop.shadow_fed_db, antenna[1])
        return replace(drop, main=replace(drop.main, gain=main), fed=replace(drop.fed, gain=fed))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=20, help="Monte Carlo drops per bandwidth")
    parser.add_argument("--out", default=None, help="results folder (default: a temporary one)")
    args = parser.parse_args(argv)

    register_radio(LogDistanceRadio, replace=True)
    means = {}
    for radio in ("paper", "logdist"):
        scenario = api.load_scenario(
            ROOT / "scenarios" / "fig5_bandwidth.toml",
            [
                f"montecarlo.drops={args.drops}",
                "sweep.axes={'system.bandwidth_main_hz' = [5e6, 20e6, 50e6]}",
                "schemes.names=['proposed', 'a']",
                f"radio.model='{radio}'",
            ],
        )
        out = Path(args.out or tempfile.mkdtemp(prefix="fedsim_path_loss_")) / radio
        rows, _ = api.run(scenario, executor="serial", out=out, figures=False)
        table = rows.groupby(["system.bandwidth_main_hz", "scheme"])["total_s"].mean().unstack() / 3600
        means[radio] = table[["proposed", "a"]]
    both = pd.concat(means, axis=1)
    both.index = [f"{b / 1e6:g} MHz" for b in both.index]
    print(f"Mean total training delay [h] over {args.drops} drops, paper radio vs log-distance path loss:")
    print(both.round(2).to_string())
    d = np.array([50.0, 200.0, 500.0])
    paper_db = 128.1 + 37.6 * np.log10(d / 1e3)
    ours_db = log_distance_db(d, LogDistanceRadio.exponent, LogDistanceRadio.frequency_hz)
    print("path loss at 50/200/500 m [dB]: paper " + " ".join(f"{v:.1f}" for v in paper_db)
          + ", log-distance " + " ".join(f"{v:.1f}" for v in ours_db))  # fmt: skip


if __name__ == "__main__":
    main()
