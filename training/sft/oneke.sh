#!/usr/bin/env bash
# Continued LoRA training of OneKE (zjunlp/OneKE) on IEPile data, IEPile's hyperparameters.
# Recipe: training/sft/oneke.yaml on 4 GPUs (override with NUM_GPUS), DeepSpeed ZeRO-2.
# Usage: bash training/sft/oneke.sh [more `deepke-llm train sft` options, e.g. --train-file F]
here="$(dirname "$0")"
NUM_GPUS="${NUM_GPUS:-4}" exec bash "$here/launch.sh" "$here/oneke.yaml" "$@"
