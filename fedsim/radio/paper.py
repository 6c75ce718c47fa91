"""The paper's radio: 128.1 + 37.6 log10(d/km) path loss, log-normal shadowing, FDMA Shannon rates.

This is today's code path (``fedsim.core.system.draw_drop``), unchanged: its links carry ``rate=None``, which the
optimiser, the delay model and the engine evaluate with the Shannon closed forms.
"""

from __future__ import annotations

import numpy as np

from fedsim.core.system import Drop, SystemParams, draw_drop


class PaperRadio:
    """The FedsLLM radio model (spec §7); the default and the reference for eq. (17)."""

    name = "paper"
    description = (
        "FedsLLM's radio: path loss 128.1 + 37.6 log10(d/km) dB with log-normal shadowing, FDMA subchannels, "
        "Shannon rate per subchannel"
    )

    def draw_drop(self, system: SystemParams, radio, rng: np.random.Generator) -> Drop:
        return draw_drop(system, rng)
