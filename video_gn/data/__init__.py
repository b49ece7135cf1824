"""Kinetics-style video data: loading, synthetic generation and preparation tools."""
