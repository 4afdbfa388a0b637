"""Bring-up: launch-file building blocks, launched nodes, the shaped link, demo and benchmarks."""
