#!/usr/bin/env bash
# Stage 1 on a SLURM cluster: one array task per shard, all writing into the same store.
#
#   mkdir -p logs                     # once, first: SLURM does not create the --output folder (logs/)
#   sbatch --array=0-7 scripts/slurm_pseudolabel.sh configs/stage1/lisa-7b.yaml 8     # 8 shards
#   sbatch --array=3,5 scripts/slurm_pseudolabel.sh configs/stage1/lisa-7b.yaml 8     # resubmit shards 3 and 5
#   sbatch --array=0-7 scripts/slurm_pseudolabel.sh configs/stage1/lisa-7b.yaml 8 --frame-stride 10
#
# Arguments: CONFIG (default configs/stage1/lisa-7b.yaml), NUM_SHARDS (or export MLLM3D_NUM_SHARDS;
# required), then any extra `mllm3d pseudolabel` options. The shard of a task is
# SLURM_ARRAY_TASK_ID / NUM_SHARDS: the array index *is* the shard index, so always give the same
# NUM_SHARDS and keep the indices in 0..NUM_SHARDS-1. A resubmitted index redoes exactly that shard and
# skips what is already complete, so a failed or preempted task is simply resubmitted as it is.
# Paths are relative to the submission directory (the repository root); see docs/stage1.md and
# docs/reliability.md (the store must be on a filesystem with atomic rename within a directory).
#SBATCH --job-name=mllm3d-stage1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=12:00:00
#SBATCH --output=logs/stage1-%A_%a.out
#SBATCH --requeue
set -euo pipefail

CONFIG=${1:-configs/stage1/lisa-7b.yaml}
NUM_SHARDS=${2:-${MLLM3D_NUM_SHARDS:-}}
if [[ -z "${NUM_SHARDS}" || ! "${NUM_SHARDS}" =~ ^[0-9]+$ ]]; then
  echo "usage: sbatch --array=0-<N-1> $0 CONFIG N [mllm3d options]  (N = number of shards, or set MLLM3D_NUM_SHARDS)" >&2
  exit 2
fi
if [[ -z "${SLURM_ARRAY_TASK_ID:-}" ]]; then
  echo "$0: not a SLURM array task (submit with sbatch --array=0-$((NUM_SHARDS - 1)))" >&2
  exit 2
fi
export MLLM3D_NUM_SHARDS=${NUM_SHARDS}  # stage1_pseudolabel.sharding: shard = SLURM_ARRAY_TASK_ID / this
shift $(( $# < 2 ? $# : 2 ))

mkdir -p logs
.venv/bin/mllm3d pseudolabel \
  --config "$CONFIG" \
  --device cuda:0 \
  --no-progress \
  --summary-json "logs/stage1-summary-${SLURM_ARRAY_JOB_ID:-local}_${SLURM_ARRAY_TASK_ID}.json" \
  "$@"
