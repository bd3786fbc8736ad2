"""Medusa decoding plugin for the engine (Cai et al. 2024, arXiv 2401.10774)."""
