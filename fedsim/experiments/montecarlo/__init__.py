"""Monte Carlo delay sweeps: per (sweep point, drop, scheme) an optimised allocation timed by the engine."""
