#!/bin/bash
# Installs trained runs as the bundled models and re-exports the shipped ONNX artifact:
#   bash scripts/install_default.sh runs/radd_bf16 runs/ar_bf16    (the default of 2026-12-02)
# The first run becomes engine_sedd/weights/default, the second (optional) the AR baseline.
# Installing is a measured decision: compare the bounds first (MODEL_CARD.md, "Changes").
set -e
cd "$(dirname "$0")/.."
E=${ENGINE:-engine}
install() { # install RUN NAME
  [ -f "$1/model/model.safetensors" ] || { echo "no trained model in $1/model" >&2; exit 2; }
  rm -rf engine_sedd/weights/$2.new
  cp -r "$1/model" engine_sedd/weights/$2.new
  rm -rf engine_sedd/weights/$2
  mv engine_sedd/weights/$2.new engine_sedd/weights/$2
}
install "$1" default
[ -z "$2" ] || install "$2" ar_baseline
# the shipped artifact is the dynamic-int8 export: measured equal to fp32 (MODEL_CARD.md, 2026-12-03)
$E --quiet export sedd --quantize int8 --force -o engine_sedd/artifacts/default
