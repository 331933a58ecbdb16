"""A template task that picks its own part of the data (a hard shard placeholder), so it
runs in a SLURM array without --shard."""

import shutil

from dispatcher import Placeholder, Task
from templates import HardShard, InputByExtensions, OutputWithExtension, cpu_task


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]),
    output_mode=OutputWithExtension(ext=".out"),
    hard_shard=HardShard(shard=Placeholder(int)),
)
class Parts(Task):
    def process(self, input, output):
        shutil.copyfile(input, output)
