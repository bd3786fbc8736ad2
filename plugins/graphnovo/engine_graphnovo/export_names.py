"""ONNX input names and layouts shared by the exporter (torch) and the onnxruntime loop (no torch)."""

import math

ENCODE_INPUTS = ["ions", "masses", "precursor", "charge", "pair_code", "node_mask"]
PS_STATE = ["memory", "keys", "cross_kv"]  # ps_encode outputs, fed to every ps_step
SF_STATE = ["cross_kv"]
PS_STEP_INPUTS = PS_STATE + ["node_mask", "last", "position", "next_mask", "past"]
SF_STEP_INPUTS = SF_STATE + ["node_mask", "node_masses", "token", "prefix", "gap", "precursor", "past"]
STEP_OUTPUTS = ["out", "present"]


def node_logit_scale(d_model: int) -> float:
    """A node head model's pointer keys carry each node's logit in one extra last column, times
    this (the query's constant last column then adds the logit to every pointer logit, which
    are divided by it)."""
    return math.sqrt(d_model)
