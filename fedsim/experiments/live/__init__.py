"""Live co-simulation: real training driven by the event engine, per rank or per arm."""
