#!/usr/bin/env bash
# The second default adapter (issue 15), one command: the instruction mix (convert / kg2instruction
# / instruct --hard-negatives, counts in runs/default_v2/data/mix.json), then LoRA SFT.
# Usage: bash training/default_model_v2/train.sh [DATA_DIR]   (default ../shared/data)
# Interrupted? Run it again: the mix is kept and training resumes from its latest checkpoint.
# Then: bash training/default_model_v2/evaluate.sh (every benchmark; Chinese NER on `msra` test,
# never on peoples_daily: MSRA train holds most People's Daily test sentences), and only if v2
# holds up against v1, export it over the shipped adapter (decided after measuring, not here):
#   python training/default_model/export_adapter.py runs/default_v2/adapter \
#       --recipe "training/default_model_v2/train.sh (mix: training/default_model_v2/build_mix.py)"
set -euo pipefail
cd "$(dirname "$0")/../.."
data_dir="${1:-${DEEPKE_DATA:-../shared/data}}"

[ -f runs/default_v2/data/train.jsonl ] || \
  python training/default_model_v2/build_mix.py --data-dir "$data_dir" --out runs/default_v2/data
deepke-llm train sft --config training/default_model_v2/sft.yaml
