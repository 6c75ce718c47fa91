"""``RadioSection``: the ``[radio]`` section of a scenario (which radio model, and the 3GPP settings of "nr").

Without a ``[radio]`` section a scenario uses the paper's radio. The 3GPP fields are read by the "nr" model
only; ``[system]`` still gives the placement disc, bandwidths, subchannel counts, powers and noise PSD.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# 3GPP TR 38.901 Table 7.2-1 (and 7.2-3 for RMa): BS antenna height per scenario [m]
DEFAULT_BS_HEIGHT_M = {"uma": 25.0, "umi": 10.0, "rma": 35.0}


class RadioSection(BaseModel):
    """Radio model of the scenario: "paper" (FedsLLM's Shannon FDMA) or "nr" (3GPP 38.901 + 5G NR PUSCH)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: str = Field(
        "paper",
        min_length=1,
        description="radio model: paper (path loss 128.1+37.6log10(d/km), Shannon), nr (3GPP TR 38.901 "
        "propagation + 5G NR PUSCH link abstraction via Sionna; needs pip install 'fedsim[nr]'), a registered "
        "name, an import path 'package.module:Class', or an entry point of the group fedsim.radios",
    )
    # --- nr: propagation (TR 38.901) ---
    scenario: Literal["uma", "umi", "rma"] = Field(
        "uma",
        description="nr: 38.901 scenario: uma (urban macro), umi (urban micro street canyon), rma (rural)",
    )
    carrier_frequency_hz: float = Field(
        3.5e9, ge=0.5e9, le=100e9, description="nr: carrier frequency f_c [Hz] (38.901: 0.5-100 GHz)"
    )
    bs_height_m: float | None = Field(
        None,
        gt=0,
        le=150,
        description="nr: server (gNB) antenna height [m]; default 25 (UMa), 10 (UMi), 35 (RMa)",
    )
    ut_height_m: float = Field(
        1.5,
        ge=1.0,
        le=22.5,
        description="nr: client (UE) antenna height [m] (hexgrid: the lowest, see ut_height_max_m)",
    )
    placement: Literal["disc", "hexgrid"] = Field(
        "disc",
        description="nr: client placement: disc = uniform in the [system] disc of radius_m around the federated "
        "server (fedsim's, as the paper radio); hexgrid = one cell of Sionna's 38.901 hexagonal grid "
        "(gen_hexgrid_topology): the federated server is the cell's 3-sector site, clients fill the sectors in "
        "turn, uniform per sector between the scenario's minimum BS-UT distance (35 m UMa/RMa, 10 m UMi) and "
        "the cell edge (apothem isd_m/2); system.radius_m is then unused",
    )
    isd_m: float | None = Field(
        None,
        gt=0,
        le=20000,
        description="nr, hexgrid: inter-site distance [m]; default 38.901's 500 (UMa), 200 (UMi), 5000 (RMa)",
    )
    ut_height_max_m: float | None = Field(
        None,
        ge=1.0,
        le=22.5,
        description="nr, hexgrid: client heights uniform in [ut_height_m, ut_height_max_m] [m] (Sionna's drop); "
        "default ut_height_m (every client at that height)",
    )
    indoor_probability: float = Field(
        0.0,
        ge=0,
        le=1,
        description="nr: probability that a client is indoors (O2I penetration loss; 3GPP calibration uses "
        "0.8 in UMa/UMi, 0.5 in RMa); 0 = every client outdoors",
    )
    o2i_model: Literal["low", "high"] = Field(
        "low",
        description="nr: O2I building penetration loss model (38.901 §7.4.3: low- or high-loss building)",
    )
    los: Literal["random", "los", "nlos"] = Field(
        "random",
        description="nr: line of sight per link: random (38.901 LoS probability), or forced LoS / NLoS",
    )
    shadow_fading: bool = Field(
        True, description="nr: draw 38.901 shadow fading (scenario and LoS-state std)"
    )
    min_distance_m: float = Field(
        10.0,
        ge=1.0,
        description="nr: clients closer than this (2-D) to a server are moved out to it (38.901 path loss "
        "holds from 10 m)",
    )
    # --- nr: link (5G NR PUSCH) ---
    subcarrier_spacing_hz: Literal[15000, 30000] = Field(
        15000, description="nr: numerology, subcarrier spacing [Hz] (15 kHz: mu = 0, 30 kHz: mu = 1)"
    )
    prbs_per_subchannel: int | None = Field(
        None,
        ge=1,
        le=275,
        description="nr: PRBs in one subchannel; default floor(subchannel bandwidth / (12 x SCS)), the rest of "
        "the subchannel is guard band",
    )
    mcs_table: Literal[1, 2] = Field(
        1,
        description="nr: PUSCH MCS table of 38.214 (1: up to 64QAM, 2: up to 256QAM; table 2 uses Sionna's "
        "PDSCH table-2 BLER curves, since its PUSCH table-2 file repeats table 1)",
    )
    bler_target: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="nr: link adaptation picks the fastest MCS whose TB error rate is <= this",
    )
    dmrs_symbols: int = Field(1, ge=1, le=4, description="nr: DMRS OFDM symbols per 14-symbol slot")
    overhead_re_per_prb: Literal[0, 6, 12, 18] = Field(
        0, description="nr: xOverhead of 38.214 (REs per PRB per slot lost to other overhead)"
    )
    noise_figure_db: float = Field(0.0, ge=0, le=20, description="nr: server receiver noise figure [dB]")
    harq: Literal["sampled", "expected"] = Field(
        "sampled",
        description="nr, engine: sampled = each transfer's TB errors (HARQ retransmissions) drawn from the TB "
        "error rate on their own stream; expected = the expected goodput (deterministic, equals eq. 17)",
    )
    link_adaptation: Literal["inner", "outer"] = Field(
        "inner",
        description="nr, engine with harq = sampled: inner = each client's MCS fixed by its (estimated) SNR; "
        "outer = OLLA: a per-client SNR offset rises by olla_delta_up_db per NACK and falls by delta_up "
        "bler_target/(1 - bler_target) per ACK across the client's transfers, so the long-run TB error rate "
        "meets bler_target even with a biased estimate",
    )
    sinr_bias_db: float = Field(
        0.0,
        ge=-20,
        le=20,
        description="nr, engine with harq = sampled: error of the SNR the gNB's link adaptation sees [dB] "
        "(positive: over-estimate, too high an MCS and more TB errors); the optimiser plans with the true SNR",
    )
    olla_delta_up_db: float = Field(
        1.0,
        gt=0,
        le=10,
        description="nr, link_adaptation = outer: OLLA's offset step per NACK [dB] (Sionna's 1)",
    )
    downlink: Literal["pdsch", "shannon"] = Field(
        "pdsch",
        description="nr, engine downlink (engine.download / broadcast): pdsch = 5G NR PDSCH link abstraction "
        "(Sionna's PDSCH BLER tables of mcs_table, link adaptation to bler_target, expected goodput); shannon = "
        "the engine's Shannon downlink",
    )
    pdcch_symbols: int = Field(
        2, ge=0, le=3, description="nr, PDSCH downlink: OFDM symbols per slot of the PDCCH control region"
    )
    ue_noise_figure_db: float = Field(
        0.0, ge=0, le=20, description="nr, PDSCH downlink: client (UE) receiver noise figure [dB]"
    )
    power_control: Literal["optimised", "open_loop"] = Field(
        "optimised",
        description="nr: transmit power from fedsim's optimiser, or 38.213 open-loop power control "
        "P = min(p_max, P0 + alpha PL + 10 log10(2^mu M_RB)) as a baseline; where the powers exceed a link's p_th, "
        "P0 is lowered (for every client of the link) until they fit",
    )
    p0_dbm: float = Field(-90.0, ge=-202, le=24, description="nr, open loop: P0 nominal PUSCH power [dBm]")
    alpha: float = Field(1.0, ge=0, le=1, description="nr, open loop: path-loss compensation factor alpha")

    @field_validator("model")
    @classmethod
    def _known(cls, value: str) -> str:
        from fedsim.radio.registry import get_radio

        get_radio(value)  # InputError (a ValueError) names the reference and what is allowed
        if value == "nr":
            from fedsim.radio.sionna_env import require_sionna

            require_sionna()
        return value

    @model_validator(mode="after")
    def _adaptation_fields(self) -> RadioSection:
        if self.harq == "expected" and (self.link_adaptation == "outer" or self.sinr_bias_db != 0):
            raise ValueError(
                "radio.link_adaptation = 'outer' and radio.sinr_bias_db act on the engine's sampled TB errors: "
                "use radio.harq = 'sampled' (the expected goodput is the ideal inner loop of the analytical model)"
            )
        return self

    @model_validator(mode="after")
    def _placement_fields(self) -> RadioSection:
        if self.placement != "hexgrid":
            for name in ("isd_m", "ut_height_max_m"):
                if getattr(self, name) is not None:
                    raise ValueError(f"radio.{name} applies to radio.placement = 'hexgrid' only")
        elif self.ut_height_max_m is not None and self.ut_height_max_m < self.ut_height_m:
            raise ValueError(
                f"radio.ut_height_max_m ({self.ut_height_max_m:g}) must be >= radio.ut_height_m "
                f"({self.ut_height_m:g})"
            )
        return self

    def bs_height(self) -> float:
        """The server antenna height [m]: the field, or the 38.901 default of the scenario."""
        return self.bs_height_m if self.bs_height_m is not None else DEFAULT_BS_HEIGHT_M[self.scenario]
