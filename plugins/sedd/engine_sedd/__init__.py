"""SEDD: score-entropy discrete diffusion (Lou, Meng, Ermon, ICML 2024) for the engine.

Importing this package imports no torch; the torch-backed modules (model, losses,
likelihood, training, torch_path, export, bundle, evaluation, bench) import it themselves.
The onnxruntime path (ort_path and what it imports) never does.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
