"""Where the clients and servers stand: K clients uniform over a disc, servers at fixed points."""

from __future__ import annotations

import numpy as np


def client_positions_in_disc(num_clients: int, radius_m: float, rng: np.random.Generator) -> np.ndarray:
    """Draw client positions uniformly over the area of a disc centred at the origin.

    Args:
        num_clients: K >= 1.
        radius_m: disc radius [m], > 0.
        rng: the generator every draw comes from.

    Returns:
        positions_m: (K, 2) x/y coordinates [m]. The radius is ``R*sqrt(U)`` so the density is
        uniform per unit area, not per unit radius.
    """
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if not radius_m > 0:
        raise ValueError(f"radius_m must be > 0, got {radius_m}")
    radius = radius_m * np.sqrt(rng.uniform(0.0, 1.0, num_clients))
    angle = rng.uniform(0.0, 2.0 * np.pi, num_clients)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def distances_m(
    positions_m: np.ndarray, point_m: tuple[float, float], min_distance_m: float = 10.0
) -> np.ndarray:
    """Euclidean distance from each client to one point, clamped below at ``min_distance_m``.

    Args:
        positions_m: (K, 2) client coordinates [m].
        point_m: (x, y) of the server [m].
        min_distance_m: clamp [m], >= 0; keeps the path-loss model inside its validity range.

    Returns:
        (K,) distances [m].
    """
    if min_distance_m < 0:
        raise ValueError(f"min_distance_m must be >= 0, got {min_distance_m}")
    delta = np.asarray(positions_m, dtype=float) - np.asarray(point_m, dtype=float)[None, :]
    return np.maximum(np.hypot(delta[:, 0], delta[:, 1]), min_distance_m)
