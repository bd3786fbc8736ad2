"""SEDD: score-entropy discrete diffusion (Lou, Meng, Ermon, ICML 2024) for the engine.

Importing this package imports no torch; the torch-backed modules (model, losses,
training, component, export) import it themselves.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
