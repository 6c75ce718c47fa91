"""Experiments: one resumable harness (``harness/``: results store, parts, folder lock, executors, seeds)
and the kinds of experiment it runs (``kinds``): Monte Carlo delay sweeps (``montecarlo/``), convergence
studies (``study/``) and live co-simulation (``live/``); ``runner`` plans and runs a scenario's units."""
