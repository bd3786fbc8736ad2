"""ONNX input names shared by the exporter (torch) and the onnxruntime loop (no torch)."""

ENCODE_INPUTS = ["ions", "masses", "precursor", "charge", "pair_code", "node_mask"]
PS_STEP_INPUTS = ["memory", "node_mask", "path", "next_mask", "rows"]
SF_STEP_INPUTS = ["memory", "node_mask", "node_masses", "tokens", "prefix", "gap", "precursor", "rows"]
