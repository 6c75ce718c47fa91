"""Use fedsim from a notebook (or any script): run a scenario, pivot the rows, draw your own figure.

Each block below is one notebook cell. The rows are a tidy pandas DataFrame: one row per (sweep point,
Monte Carlo drop, scheme) with the swept value, the decisions (cut, rank) and every delay term.

    python examples/notebook.py                  # 20 drops per power level
    python examples/notebook.py --drops 2        # the setting examples/expected/notebook.txt shows
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fedsim import api  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=20, help="Monte Carlo drops per power level")
    parser.add_argument("--out", default=None, help="results folder (default: a temporary one)")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="fedsim_notebook_"))

    # --- cell 1: load the Fig. 8 scenario (delay vs client power), smaller, and run it
    scenario = api.load_scenario(
        ROOT / "scenarios" / "fig8_power.toml",
        [f"montecarlo.drops={args.drops}", "schemes.names=['proposed', 'c', 'd']"],
    )
    rows, folder = api.run(scenario, executor="serial", out=out, figures=False)

    # --- cell 2: pivot: mean total delay [h] per power level (dBm) and scheme
    rows["p_max_dbm"] = (10 * np.log10(rows["system.p_max_w"] * 1e3)).round(1)
    table = rows.pivot_table(index="p_max_dbm", columns="scheme", values="total_s", aggfunc="mean") / 3600
    print("Mean total training delay [h]:")
    print(table[["proposed", "c", "d"]].round(2).to_string())

    # --- cell 3: which cut and rank does the proposed scheme choose?
    proposed = rows[rows["scheme"] == "proposed"]
    choices = proposed.groupby("p_max_dbm")[["cut_mean", "rank"]].mean()
    print("Proposed scheme, mean cut and rank chosen:")
    print(choices.round(2).to_string())

    # --- cell 4: your own figure: where one local iteration of the proposed scheme goes (eq. 16:
    # t = T1 [client forward + activation upload] + server forward and backward + T2 [client backward])
    proposed = proposed.assign(server_s=proposed["iteration_s"] - proposed["T1_s"] - proposed["T2_s"])
    parts = proposed.groupby("p_max_dbm")[["T1_s", "server_s", "T2_s"]].mean()
    fig, ax = plt.subplots(figsize=(4, 2.8))
    bottom = 0
    labels = {"T1_s": "T1: client FP + upload", "server_s": "main server FP + BP", "T2_s": "T2: client BP"}
    for column, label in labels.items():
        ax.bar([f"{v:g}" for v in parts.index], parts[column], bottom=bottom, label=label)
        bottom = bottom + parts[column]
    ax.set_xlabel("client power p_max [dBm]")
    ax.set_ylabel("time per local iteration [s]")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    path = folder / "my_breakdown.png"
    fig.savefig(path, dpi=150)
    plt.close(fig)
    print(f"figure: {path.name} ({len(parts)} bars)")


if __name__ == "__main__":
    main()
