#!/usr/bin/env bash
# Stage 1 on a SLURM cluster: one array task per shard, all writing into the same store.
#
#   sbatch --array=0-7 scripts/slurm_pseudolabel.sh            # 8 shards
#   sbatch --array=0-7 scripts/slurm_pseudolabel.sh configs/stage1/lisa-7b.yaml
#
# Each task handles the scenes of shard i/n (sorted scene ids, round robin) and skips what is already
# complete, so a failed or preempted task is simply resubmitted (e.g. sbatch --array=3 ...).
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
# 0-based shard index even when the array does not start at 0 (e.g. --array=8-15)
SHARD_INDEX=$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0}))
SHARD_COUNT=${SLURM_ARRAY_TASK_COUNT}

mkdir -p logs
.venv/bin/mllm3d pseudolabel \
  --config "$CONFIG" \
  --shard "${SHARD_INDEX}/${SHARD_COUNT}" \
  --device cuda:0 \
  --no-progress \
  --summary-json "logs/stage1-summary-${SLURM_ARRAY_JOB_ID}_${SHARD_INDEX}.json"
