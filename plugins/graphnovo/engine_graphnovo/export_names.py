"""ONNX input names shared by the exporter (torch) and the onnxruntime loop (no torch)."""

ENCODE_INPUTS = ["ions", "masses", "precursor", "charge", "pair_code", "node_mask"]
PS_STEP_INPUTS = ["memory", "node_mask", "last", "position", "next_mask", "rows", "past"]
SF_STEP_INPUTS = ["memory", "node_mask", "node_masses", "token", "prefix", "gap", "precursor", "rows", "past"]
STEP_OUTPUTS = ["out", "present"]
