"""The bigram sampler's own option: the core turns it into ``--smoothing``."""

import attrs

from engine.options import option


@attrs.frozen
class BigramOptions:
    # read when the table is built from text, not when an exported artifact runs
    smoothing: float = option(
        1.0, "add-k smoothing of the bigram counts", paths=("torch",), validator=attrs.validators.gt(0)
    )
