"""What a run tells: progress, counts, the summary, statistics, `failures.jsonl` and `run.json`."""
