"""The SLURM array Stamp for submitted scripts: each output and journal line says the array
task, job and shard (the environment `dispatch submit`'s script sets) that made it."""

import os

from slurm_array_stamp import Stamp as ArrayStamp


class Stamp(ArrayStamp):
    def setup(self):
        pass

    def stamp(self, name):
        return {
            "name": name,
            "task": os.environ.get("SLURM_ARRAY_TASK_ID"),
            "job": os.environ.get("SLURM_ARRAY_JOB_ID"),
            "shard": os.environ.get("DISPATCH_SHARD_INDEX"),
        }
