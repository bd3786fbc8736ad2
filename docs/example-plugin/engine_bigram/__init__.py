"""An example engine plugin: a character bigram sampler."""

__version__ = "0.1.0"
