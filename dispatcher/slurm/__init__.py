"""SLURM: `dispatch submit` (array jobs over shards) and `dispatch status` (per shard)."""
