"""The one-link path of ``power.min_time_flat`` (Python-float bookkeeping) gives the same bits as its
vectorised loop (the same link with a leading batch axis of one)."""

from __future__ import annotations

import numpy as np

from fedsim.optimize.power import min_time_flat


def _draw(rng: np.random.Generator, k: int) -> dict:
    sub_hz = float(rng.uniform(2e5, 3e6))
    return dict(
        n_sub=rng.integers(1, 6, size=k).astype(float),
        gain=np.where(rng.random(k) < 0.03, 0.0, 10.0 ** rng.uniform(-13, -8, size=k)),  # 0: never finishes
        offset_s=np.where(rng.random(k) < 0.3, 0.0, rng.uniform(0.0, 2.0, size=k)),
        load_bits=np.where(rng.random(k) < 0.1, 0.0, rng.uniform(1e5, 1e8, size=k)),
        p_max_w=np.full(k, 0.2) if rng.random() < 0.5 else rng.uniform(0.05, 0.3, size=k),
        p_th_w=float(rng.uniform(0.05, 1.5)),
        sub_hz=sub_hz,
        noise_psd_w_hz=float(10 ** (-20.4 + rng.uniform(-1, 1))),
    )


def test_one_link_path_matches_the_vectorised_loop_bit_for_bit():
    rng = np.random.default_rng(24)
    newton_runs = infeasible = 0
    for _ in range(400):
        a = _draw(rng, int(rng.integers(1, 9)))
        t1, p1 = min_time_flat(a["n_sub"], a["gain"], a["offset_s"], load_bits=a["load_bits"],
                               p_max_w=a["p_max_w"], p_th_w=a["p_th_w"], sub_hz=a["sub_hz"],
                               noise_psd_w_hz=a["noise_psd_w_hz"])  # fmt: skip
        tb, pb = min_time_flat(a["n_sub"][None], a["gain"], a["offset_s"][None], load_bits=a["load_bits"][None],
                               p_max_w=a["p_max_w"], p_th_w=a["p_th_w"], sub_hz=a["sub_hz"],
                               noise_psd_w_hz=a["noise_psd_w_hz"])  # fmt: skip
        assert np.ndim(t1) == 0 and np.shape(p1) == np.shape(a["n_sub"])
        assert np.asarray(t1, float).tobytes() == np.asarray(tb[0], float).tobytes()
        assert np.asarray(p1, float).tobytes() == np.asarray(pb[0], float).tobytes()
        newton_runs += bool(np.isfinite(t1) and p1.sum() > a["p_th_w"] * (1 - 1e-9))
        infeasible += not np.isfinite(t1)
    assert newton_runs > 20  # the p_th-bound case (Newton iterations) is exercised, not only the p_max one
    assert infeasible > 5
