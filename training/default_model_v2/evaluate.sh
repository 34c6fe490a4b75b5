#!/usr/bin/env bash
# Every bundled benchmark that has data here, full test splits, for the v2 adapter (issue 15);
# the v1 adapter where v2 needs a comparison it lacks (MSRA test); the base model's 3-shot
# baselines on the benchmarks new in v2 (first 500 documents: 3 demonstrations make prompts of
# 1-2k tokens, hours per full split on 2 CPU cores).
# Usage: bash training/default_model_v2/evaluate.sh [ADAPTER_DIR] [DATA_DIR]
#   ADAPTER_DIR: a PEFT adapter (default: runs/default_v2/adapter, the finished run);
#   V1_ADAPTER (env): the v1 adapter (default: deepke_llm/adapters/default, until v2 replaces it)
# Engine: auto (llama.cpp when installed), constrained decoding (evaluate's default), batch 16.
# Interrupted? Run it again: finished reports are skipped, a started one resumes (--resume).
# Chinese NER is scored on `msra` test only: MSRA train (in the v2 mix) holds most People's
# Daily test sentences, so peoples_daily is no longer a clean test for v2.
set -euo pipefail
# paths given by the caller are taken from the caller's directory
adapter="$(realpath -m "${1:-$(dirname "$0")/../../runs/default_v2/adapter}")"
export DEEPKE_DATA="$(realpath -m "${2:-${DEEPKE_DATA:-$(dirname "$0")/../../../shared/data}}")"
v1_adapter="$(realpath -m "${V1_ADAPTER:-$(dirname "$0")/../../deepke_llm/adapters/default}")"
cd "$(dirname "$0")/../.."
out=benchmarks/results

run() {  # run NAME BENCHMARK [evaluate options...]: skipped when NAME's report exists
  local name="$1" bench="$2"
  shift 2
  if compgen -G "$out/$bench/$name-[0-9]*.json" > /dev/null; then  # NAME-DATE.json
    echo "skip $bench $name (reported)"
    return
  fi
  deepke-llm evaluate "$bench" --model-name "$name" --batch-size 16 --no-progress --resume \
      --output-dir "$out" "$@"
}

# the benchmarks with goals first (issue 15), then the rest; about 47k prompts in all (RE and EE
# schemas are asked 4 types per prompt: FinRE 7 prompts a sentence, FewFC 3), hours on 2 cores
v2() {  # v2 BENCHMARK MAX_NEW_TOKENS
  run deepke-default-v2 "$1" --model default --lora "$adapter" --max-new-tokens "$2"
}
v2 conll03 128; v2 conll04 128; v2 msra 128
v2 fewfc_base 256; v2 phee 256  # event answers run longer
# v1, the adapter shipped before v2 (run this before exporting v2 over it; git holds v1 after)
run deepke-default msra --model default --lora "$v1_adapter" \
    --max-new-tokens 128
v2 finre 128; v2 fewfc_trans 256; v2 fewrel 128
for bench in msra finre; do
  run gemma-3-270m-3shot "$bench" --model default --few-shot 3 --limit 500 --max-new-tokens 128
done
for bench in fewfc_base fewfc_trans phee; do
  run gemma-3-270m-3shot "$bench" --model default --few-shot 3 --limit 500 --max-new-tokens 256
done
git add "$out"
python benchmarks/readme_tables.py
