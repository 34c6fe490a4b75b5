#!/usr/bin/env bash
# Launch `deepke-llm train sft` on one node (or a hostfile's nodes) with the DeepSpeed launcher.
#
# Usage: bash training/sft/launch.sh RECIPE.yaml [more `deepke-llm train sft` options]
# Env:   NUM_GPUS          GPUs to use (default: all that nvidia-smi lists)
#        DEEPSPEED_CONFIG  zero2 (default), zero3, zero3_offload (training/configs/ds_*.json) or a
#                          JSON path; set it empty to train without DeepSpeed (e.g. --method qlora)
#        HOSTFILE          a DeepSpeed hostfile for multi-node runs
#        MASTER_PORT       rendezvous port (default 29500)
# Relative paths in the recipe (data, output_dir) are read from the current directory.
set -euo pipefail

recipe="${1:?usage: launch.sh RECIPE.yaml [train sft options]}"
shift
ds_config="${DEEPSPEED_CONFIG-zero2}"
launcher=(deepspeed --no_local_rank --master_port "${MASTER_PORT:-29500}")
if [[ -n "${HOSTFILE:-}" ]]; then
  launcher+=(--hostfile "$HOSTFILE")
else
  launcher+=(--num_gpus "${NUM_GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}")
fi
# --no_local_rank: the launcher would put --local_rank in front of `train sft`; every process
# reads its rank from the LOCAL_RANK environment variable instead.
exec "${launcher[@]}" --module deepke_llm.cli train sft --config "$recipe" \
  ${ds_config:+--deepspeed "$ds_config"} "$@"
