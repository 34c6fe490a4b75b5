#!/usr/bin/env bash
# The default model's IE adapter (LoRA on Gemma 3 270M); see training/default_model/train.sh for
# the whole recipe. Usage: bash training/sft/default_small.sh [more `deepke-llm train sft` options]
here="$(dirname "$0")"
NUM_GPUS="${NUM_GPUS:-1}" exec bash "$here/launch.sh" "$here/default_small.yaml" "$@"
