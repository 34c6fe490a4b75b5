#!/usr/bin/env bash
# LoRA on Qwen2.5-7B-Instruct (ChatML chat template from the tokenizer).
# Recipe: training/sft/qwen2_5.yaml on 8 GPUs (override with NUM_GPUS), DeepSpeed ZeRO-2.
# Usage: bash training/sft/qwen2_5.sh [more `deepke-llm train sft` options, e.g. --train-file F]
here="$(dirname "$0")"
NUM_GPUS="${NUM_GPUS:-8}" exec bash "$here/launch.sh" "$here/qwen2_5.yaml" "$@"
