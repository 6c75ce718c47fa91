"""Split-fed settings against centralized training: a study whose split-fed runs vary the cut and the data
partition (``SETTING_FIELDS``) and whose centralized runs (pooled data, no cut) are the reference of every
setting. Every comparison pairs runs by seed and gives the mean difference with its 95 % Student-t CI over
the paired seeds, and whether that CI excludes 0."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fedsim.experiments.study.tables import SETTING_FIELDS, t_interval

__all__ = ["data_label", "setting_differences", "setting_gaps"]


def data_label(partition: str, dirichlet_alpha: float) -> str:
    """'IID' or e.g. 'length-Dirichlet α = 0.1' (the concentration only where the partition reads it)."""
    if partition == "iid":
        return "IID"
    return f"{partition.replace('_', '-')} α = {dirichlet_alpha:g}"


def _paired(mine: pd.Series, theirs: pd.Series, relative: bool = False) -> dict:
    """Seed-paired ``mine - theirs`` (in % of ``theirs`` with ``relative``): mean, 95 % t-CI, seeds."""
    seeds = sorted(set(mine.index) & set(theirs.index))
    a, b = mine[seeds].to_numpy(float), theirs[seeds].to_numpy(float)
    diffs = 100 * (a - b) / b if relative else a - b
    diffs = diffs[np.isfinite(diffs)]
    mean, lo, hi = t_interval(diffs) if diffs.size else (math.nan,) * 3
    return {"seeds": int(diffs.size), "mean": mean, "lo": lo, "hi": hi,
            "excludes_0": bool(math.isfinite(lo) and (lo > 0 or hi < 0))}  # fmt: skip


def _by_seed(rows: pd.DataFrame, metric: str) -> pd.Series:
    return rows.set_index("seed")[metric].astype(float)


def setting_gaps(rows: pd.DataFrame, metric: str = "plateau_val_ppl") -> pd.DataFrame:
    """Per rank and split-fed setting (cut, partition, Dirichlet concentration): the split-fed and centralized
    mean ± std of ``metric`` over seeds, and the seed-paired gap split_fed − centralized in PPL and in % of the
    centralized run, each with its 95 % t-CI."""
    fields = [f for f in SETTING_FIELDS if f in rows]
    out = []
    for rank, group in rows.groupby("rank", sort=True):
        central = _by_seed(group[group.training_scheme == "centralized"], metric)
        split = group[group.training_scheme == "split_fed"]
        for key, g in split.groupby(fields, sort=True):
            sf = _by_seed(g, metric)
            entry = {"rank": int(rank), **dict(zip(fields, key, strict=True)), "data": data_label(key[1], key[2])}
            entry.update({"split_fed_seeds": len(sf), "split_fed_mean": sf.mean(), "split_fed_std": sf.std(),
                          "centralized_seeds": len(central), "centralized_mean": central.mean(),
                          "centralized_std": central.std()})  # fmt: skip
            entry.update({f"gap_{k}": v for k, v in _paired(sf, central).items()})
            entry.update({f"gap_pct_{k}": v for k, v in _paired(sf, central, relative=True).items()})
            out.append(entry)
    return pd.DataFrame(out)


def setting_differences(rows: pd.DataFrame, metric: str = "plateau_val_ppl") -> pd.DataFrame:
    """Do the cut and the partition matter among the split-fed runs? Per rank, paired by seed, in % of the
    reference: each deeper cut against the shallowest on the same data, and each non-IID partition against
    IID at the same cut. Mean, 95 % t-CI over the paired seeds and whether it excludes 0."""
    out = []
    split = rows[rows.training_scheme == "split_fed"]
    for rank, group in split.groupby("rank", sort=True):
        for (partition, alpha), g in group.groupby(["partition", "dirichlet_alpha"], sort=True):
            cuts = sorted(g["cut"].unique())
            for cut in cuts[1:]:
                paired = _paired(_by_seed(g[g.cut == cut], metric), _by_seed(g[g.cut == cuts[0]], metric), True)
                out.append({"rank": int(rank), "comparison": f"cut {cut} − cut {cuts[0]}",
                            "data": data_label(partition, alpha), **paired})  # fmt: skip
        iid = group[group.partition == "iid"]
        for (partition, alpha), g in group[group.partition != "iid"].groupby(["partition", "dirichlet_alpha"]):
            for cut in sorted(g["cut"].unique()):
                paired = _paired(_by_seed(g[g.cut == cut], metric), _by_seed(iid[iid.cut == cut], metric), True)
                out.append({"rank": int(rank), "comparison": f"{data_label(partition, alpha)} − IID",
                            "data": f"cut {cut}", **paired})  # fmt: skip
    return pd.DataFrame(out)
