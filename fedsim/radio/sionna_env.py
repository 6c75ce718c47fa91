"""Sionna behind one door: the lazy import, its one-line install error, threads and seeding.

Sionna (PyPI ``sionna-no-rt``, Apache-2.0, PyTorch-based) is an optional extra (``pip install 'fedsim[nr]'``).
It is imported only when a scenario uses the "nr" radio. On small shared machines its torch calls are
10-60x slower with several threads, so every call runs inside ``sionna_call()``: one torch thread, the
caller's own seed for Sionna's generators, and the process's torch thread count and global RNG state
restored afterwards, so nothing outside the "nr" radio changes behaviour.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util

from fedsim.errors import InputError

INSTALL_HINT = "pip install 'fedsim[nr]'  (sionna-no-rt==2.2.0, Python >= 3.11)"


def sionna_available() -> bool:
    """True when the ``sionna`` package can be imported."""
    return importlib.util.find_spec("sionna") is not None


def require_sionna() -> None:
    """Raise the one-line InputError naming the install command when Sionna is missing."""
    if not sionna_available():
        raise InputError(f"radio.model 'nr' needs Sionna, which is not installed: {INSTALL_HINT}")


@contextlib.contextmanager
def sionna_call(seed: int | None = None):
    """Run Sionna code with one torch thread and (if given) ``seed`` on Sionna's generators; restores the
    torch thread count and torch's global RNG state on exit."""
    require_sionna()
    import torch

    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        try:
            if seed is not None:
                from sionna.phy import config

                config.seed = int(seed)
            yield
        finally:
            torch.set_num_threads(threads)


@functools.lru_cache(maxsize=2)
def phy_abstraction(snr_db_min: float, snr_db_max: float, snr_db_step: float, *, downlink: bool = False):
    """Sionna's ``PHYAbstraction`` with the BLER tables fedsim uses, built once per process on the SNR grid
    [dB] given: uplink PUSCH table 1 (and PDSCH table 2 as the 256QAM proxy), or downlink PDSCH tables 1
    and 2 (a separate instance, so the uplink's tables are the same whatever the downlink does)."""
    with sionna_call():
        import os

        import sionna.sys.phy_abstraction as module
        from sionna.sys import PHYAbstraction

        folder = os.path.join(os.path.dirname(module.__file__), "bler_tables")
        names = (
            ("PDSCH_table1.json", "PDSCH_table2.json")
            if downlink
            else ("PUSCH_table1.json", "PDSCH_table2.json")
        )
        return PHYAbstraction(
            load_bler_tables_from=[os.path.join(folder, name) for name in names],
            snr_db_interp_min_max_delta=(snr_db_min, snr_db_max + 0.5 * snr_db_step, snr_db_step),
        )
