"""Radio models: the paper's Shannon FDMA radio and a 3GPP one (38.901 propagation + 5G NR PUSCH, Sionna).

Public API::

    draw_radio_drop(system, radio, rng) -> Drop       # radio: a RadioSection or None (= paper)
    get_radio(ref), register_radio(obj), registered_radios()
    RadioSection, LinkRate, RadioModel, ShannonRate
"""

from __future__ import annotations

import numpy as np

from fedsim.core.link import LinkRate, RadioModel, ShannonRate, link_client_rates_bps
from fedsim.core.system import Drop, SystemParams, draw_drop
from fedsim.radio.config import RadioSection
from fedsim.radio.registry import get_radio, register_radio, registered_radios, unregister_radio

__all__ = [
    "LinkRate",
    "RadioModel",
    "RadioSection",
    "ShannonRate",
    "draw_radio_drop",
    "get_radio",
    "link_client_rates_bps",
    "register_radio",
    "registered_radios",
    "unregister_radio",
]


def draw_radio_drop(system: SystemParams, radio: RadioSection | None, rng: np.random.Generator) -> Drop:
    """One drop of ``system`` under the radio model of ``radio`` (None or model "paper": ``draw_drop``)."""
    if radio is None or radio.model == "paper":
        return draw_drop(system, rng)
    return get_radio(radio.model).draw_drop(system, radio, rng)
