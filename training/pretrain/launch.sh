#!/usr/bin/env bash
# Pretraining with the DeepSpeed launcher: one node (all its GPUs) or many (a hostfile).
#
#   bash training/pretrain/launch.sh [CONFIG] [overrides for `deepke-llm pretrain run`...]
#
#   # one node, 8 GPUs, the recipe's config:
#   bash training/pretrain/launch.sh training/pretrain/pretrain.yaml
#   # two nodes (hostfile lines: "node1 slots=8"), another output dir:
#   HOSTFILE=hosts MASTER_ADDR=node1 bash training/pretrain/launch.sh training/pretrain/pretrain.yaml --output-dir runs/x
#
# Environment: HOSTFILE, NUM_GPUS (per node), MASTER_ADDR, MASTER_PORT (default 29500).
# Re-running the same command resumes from the latest checkpoint in output_dir (resume: auto) and
# continues the data order exactly where it stopped, on any number of nodes.
set -euo pipefail

config=${1:-training/pretrain/pretrain.yaml}
[[ $# -gt 0 ]] && shift

launcher=(deepspeed --master_port "${MASTER_PORT:-29500}")
[[ -n "${HOSTFILE:-}" ]] && launcher+=(--hostfile "$HOSTFILE")
[[ -n "${NUM_GPUS:-}" ]] && launcher+=(--num_gpus "$NUM_GPUS")
[[ -n "${MASTER_ADDR:-}" ]] && launcher+=(--master_addr "$MASTER_ADDR")

# --no_local_rank: ranks come from the environment (LOCAL_RANK), not a CLI flag the click group
# would not know
exec "${launcher[@]}" --no_local_rank --module deepke_llm.cli pretrain run --config "$config" "$@"
