"""A template task with a placeholder in every field it can have."""

from dispatcher import IndexShard, Placeholder, Task
from templates import FinishWhenExists, HardShard, InputByExtensions, OutputWithExtension, cpu_task


@cpu_task(
    input=Placeholder(str, help="the input root"),
    output=Placeholder(str, help="the output root"),
    input_mode=InputByExtensions(exts=Placeholder(list[str], default=[".txt"], help="which files")),
    output_mode=OutputWithExtension(ext=Placeholder(str, default=".json")),
    finish=FinishWhenExists(name=Placeholder(str, default=None)),
    hard_shard=HardShard(shard=Placeholder(int, help="part")),
    shard=IndexShard(
        shard_idx=Placeholder(int | list[int], default=0), shard_num=Placeholder(int, default=1)
    ),
    suffix=Placeholder(str, default="!", help="appended to every line"),
)
class Everything(Task):
    def process(self, input, output):
        with open(input) as src, open(output, "w") as dst:
            dst.write(src.read() + self.mixin.suffix)
