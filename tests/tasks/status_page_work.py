"""Items that take `sleep` seconds each; every `fail_every`-th fails with an error that
holds markup and a path (what the status page must escape and group); item `hang_on` takes
two minutes, for a shard to be killed in. `fail_every=0`: none fails."""

import os
import time

from dispatcher import Placeholder, Task, atomic_write


class Work(Task):
    mixin = {
        "out": Placeholder(str),
        "n": Placeholder(int, default=30),
        "sleep": Placeholder(float, default=0.05),
        "fail_every": Placeholder(int, default=4),
        "hang_on": Placeholder(int, default=-1),
    }

    def generate_tasks(self):
        return ({"i": i} for i in range(self.mixin.n))

    def item_key(self, item):
        return f"{item['i']:04d}"

    def _out(self, i):
        return os.path.join(self.mixin.out, f"{i:04d}.txt")

    def is_executed(self, i):
        return os.path.exists(self._out(i))

    def process(self, i):
        time.sleep(120 if i == self.mixin.hang_on else self.mixin.sleep)
        if self.mixin.fail_every and i % self.mixin.fail_every == 0:
            raise ValueError(f"cannot read /data/{i}.bin at byte {i * 7}: <bad & header>")
        with atomic_write(self._out(i)) as tmp, open(tmp, "w") as fh:
            fh.write("done")
