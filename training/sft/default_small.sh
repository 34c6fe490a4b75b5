#!/usr/bin/env bash
# The small default: LoRA on Qwen2.5-0.5B-Instruct with IEPile-format data.
# Recipe: training/sft/default_small.yaml on one GPU (override with NUM_GPUS), DeepSpeed ZeRO-2.
# Usage: bash training/sft/default_small.sh [more `deepke-llm train sft` options, e.g. --train-file F]
here="$(dirname "$0")"
NUM_GPUS="${NUM_GPUS:-1}" exec bash "$here/launch.sh" "$here/default_small.yaml" "$@"
