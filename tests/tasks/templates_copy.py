"""Copy each input to OUTPUT/KEY.out, one class per input mode the template tests list by."""

from dispatcher import IndexShard, Placeholder, Task
from templates import (
    InputByExtensions,
    InputByGlob,
    InputFromJsonl,
    OutputWithExtension,
    cpu_task,
)


class _Copy(Task):
    def process(self, input, output, **item):
        with open(input) as src, open(output, "w") as dst:
            dst.write(src.read())


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(".out"))
class CopyText(_Copy):
    pass


@cpu_task(
    input_mode=InputByExtensions(exts=[".mp4", "mkv"]), output_mode=OutputWithExtension(".out")
)
class CopyVideos(_Copy):
    pass


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"], hidden=True),
    output_mode=OutputWithExtension(".out"),
)
class CopyTextHiddenToo(_Copy):
    pass


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"], follow_links=Placeholder(bool, default=False)),
    output_mode=OutputWithExtension(".out"),
)
class CopyTextFollowingLinks(_Copy):
    pass


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt", ".out"]), output_mode=OutputWithExtension(".out")
)
class CopyTextAndOut(_Copy):
    pass


@cpu_task(
    input_mode=InputByGlob(
        pattern=Placeholder(list[str]), case_sensitive=Placeholder(bool, default=True)
    ),
    output_mode=OutputWithExtension(".out"),
)
class CopyByGlob(_Copy):
    pass


@cpu_task(
    input_mode=InputFromJsonl(path=Placeholder(str, default=None)),
    output_mode=OutputWithExtension(".out"),
)
class CopyFromJsonl(_Copy):
    """`input_mode.path` names the list; left out, the task's `input` is the list."""


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]),
    shard=[IndexShard(shard_idx=1, shard_num=2), IndexShard(shard_idx=[0, 1], shard_num=3)],
    output_mode=OutputWithExtension(".out"),
)
class CopyNestedShards(_Copy):
    pass
