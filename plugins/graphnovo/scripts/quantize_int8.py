"""The model card's "Dynamic int8" section: the shipped artifact with onnxruntime dynamic int8.

engine.quantize (onnxruntime's quantize_dynamic: MatMul and Gemm weights int8 per channel,
activations quantized at run time) on each of the four graphs of the shipped fp32 artifact,
written as an artifact `engine bench graphnovo --artifact DIR` and `engine eval graphnovo
--artifact DIR` run. The plugin does not offer this (`engine export graphnovo --quantize`
is refused): it did not pay, see the card.

    python scripts/quantize_int8.py OUT_DIR
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from engine.artifacts import read_artifact, write_derived_artifact
from engine.quantize import dynamic_int8_scheme, quantize_dynamic_int8


def main(argv: list[str]) -> int:
    from engine_graphnovo.component import DEFAULT_ARTIFACT

    out = Path(argv[0])
    art = read_artifact(DEFAULT_ARTIFACT)
    man = art.manifest
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for model in man["models"].values():
            dest = Path(tmp) / model["file"]
            quantize_dynamic_int8(DEFAULT_ARTIFACT / model["file"], dest)
            files[model["file"]] = dest
        config = {**art.config, "quantization": dynamic_int8_scheme()}
        write_derived_artifact(art, out, files=files, config=config, overwrite=True)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
