#!/usr/bin/env bash
# ZhiXi (KnowLM-13B) style LoRA instruction tuning on Alpaca-format data, KnowLM's hyperparameters.
# Recipe: training/sft/knowlm_zhixi_13b.yaml on 8 GPUs (override with NUM_GPUS), DeepSpeed ZeRO-2.
# Usage: bash training/sft/knowlm_zhixi_13b.sh [more `deepke-llm train sft` options, e.g. --train-file F]
here="$(dirname "$0")"
NUM_GPUS="${NUM_GPUS:-8}" exec bash "$here/launch.sh" "$here/knowlm_zhixi_13b.yaml" "$@"
