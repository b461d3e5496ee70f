"""Benchmarks and device checks (a package so that Hydra can instantiate their callbacks by name)."""
