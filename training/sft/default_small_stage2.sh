#!/usr/bin/env bash
# Stage 2 of the default model's IE adapter (continues stage 1); see training/default_model/train.sh.
here="$(dirname "$0")"
NUM_GPUS="${NUM_GPUS:-1}" exec bash "$here/launch.sh" "$here/default_small_stage2.yaml" "$@"
