#!/usr/bin/env bash
# Word counts of tasks/data/text as a SLURM array: each array task runs one shard.
#
#   mkdir -p dispatch-logs/slurm && sbatch tasks/slurm/job.sh     # from the repository root: 4 shards
#   sbatch --array=0-15 tasks/slurm/job.sh --mixin input=/data/text output=/data/counts
#
# Arguments after the script name go to `dispatch` and override the ones below. Rerun the
# same command after a preemption, a time limit or a failure: items already done are
# skipped, so only what is missing runs. Each array task's log goes to dispatch-logs/slurm/,
# beside the run records (SLURM does not create that folder: make it before submitting).
# See docs/slurm.md.
#
#SBATCH --job-name=wordcount
#SBATCH --array=0-3
#SBATCH --cpus-per-task=1
#SBATCH --time=00:10:00
#SBATCH --output=dispatch-logs/slurm/%x-%A_%a.out
set -euo pipefail

# --shard auto: shard (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) of SLURM_ARRAY_TASK_COUNT.
# exec: the dispatcher replaces this shell, so the SIGTERM that SLURM sends on scancel,
# time limit and preemption reaches it directly and it exits 143 with its summary written.
# --grace 20: in-flight items may finish for 20 s, inside SLURM's KillWait (30 s default).
exec dispatch tasks/wordcount.py WordCount --shard auto --grace 20 \
    --mixin input=tasks/data/text output=out/wordcount "$@"
