#!/usr/bin/env bash
# LoRA on Llama-3.1-8B-Instruct with its own chat template, IEPile-format data.
# Recipe: training/sft/llama3.yaml on 8 GPUs (override with NUM_GPUS), DeepSpeed ZeRO-2.
# Usage: bash training/sft/llama3.sh [more `deepke-llm train sft` options, e.g. --train-file F]
here="$(dirname "$0")"
NUM_GPUS="${NUM_GPUS:-8}" exec bash "$here/launch.sh" "$here/llama3.yaml" "$@"
