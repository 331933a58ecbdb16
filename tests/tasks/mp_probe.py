"""A probe for the `mp` engine: one small file per item through `atomic_write`; what an item
does (raise, segfault, hang, sleep) is chosen per run with --mixin. setup() and teardown()
append "s" and "t" to OUT/_workers/PID, so a test counts workers and their setups."""

import ctypes
import os
import time

from dispatcher import Placeholder, Task, atomic_write


def listed(value, i):
    return value == "all" or str(i) in str(value).split(",")


class Poison:
    # pickles fine in the parent; unpickling it in a worker segfaults

    def __reduce__(self):
        return (ctypes.string_at, (0,))


class Garbled:
    # pickles fine in the parent; unpickling it in a worker raises

    def __reduce__(self):
        return (int, ("not a number",))


class Probe(Task):
    mixin = {
        "out": Placeholder(str),
        "n": Placeholder(int, default=20),
        "sleep": Placeholder(float, default=0.0),
        "raise_on": Placeholder(str, default="-"),
        "crash_on": Placeholder(str, default="-"),
        "hang_on": Placeholder(str, default="-"),
        "flaky": Placeholder(str, default="-"),
        "crash_once": Placeholder(str, default="-"),
        "unsendable": Placeholder(str, default="-"),
        "poison_on": Placeholder(str, default="-"),
        "garbled_on": Placeholder(str, default="-"),
        "setup_fails": Placeholder(bool, default=False),
        "setup_crashes": Placeholder(bool, default=False),
        "second_setup_fails": Placeholder(bool, default=False),
    }

    def generate_tasks(self):
        for i in range(self.mixin.n):
            if listed(self.mixin.unsendable, i):
                yield {"i": i, "fn": lambda: None}
            elif listed(self.mixin.poison_on, i):
                yield {"i": i, "fn": Poison()}
            elif listed(self.mixin.garbled_on, i):
                yield {"i": i, "fn": Garbled()}
            else:
                yield {"i": i}

    def item_key(self, item):
        return f"{item['i']:04d}"

    def _out(self, i):
        return os.path.join(self.mixin.out, f"{i:04d}.txt")

    def _mark(self, folder, name, text):
        path = os.path.join(self.mixin.out, "_" + folder)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, name), "a") as fh:
            fh.write(text)

    def is_executed(self, i, fn=None):
        return os.path.exists(self._out(i))

    def setup(self):
        self._mark("workers", str(os.getpid()), "s")
        if self.mixin.setup_crashes:
            ctypes.string_at(0)
        if self.mixin.setup_fails:
            raise RuntimeError("no model here")
        if self.mixin.second_setup_fails and not self._first_to_set_up():
            # the first worker sets up; the next one fails once an item is running
            end = time.monotonic() + 30
            while not os.path.isdir(os.path.join(self.mixin.out, "_pids")):
                if time.monotonic() > end:
                    break
                time.sleep(0.05)
            raise RuntimeError("no model for the second worker")

    def _first_to_set_up(self):
        os.makedirs(os.path.join(self.mixin.out, "_setup"), exist_ok=True)
        try:
            os.close(
                os.open(os.path.join(self.mixin.out, "_setup", "first"), os.O_CREAT | os.O_EXCL)
            )
        except FileExistsError:
            return False
        return True

    def teardown(self):
        self._mark("workers", str(os.getpid()), "t")

    def process(self, i, fn=None):
        self._mark("attempts", f"{i:04d}", "a")
        if listed(self.mixin.raise_on, i):
            raise ValueError(f"item {i} is bad")
        if listed(self.mixin.crash_on, i):
            ctypes.string_at(0)
        marker = os.path.join(self.mixin.out, "_attempts", f"{i:04d}.tried")
        if listed(self.mixin.flaky, i) and not os.path.exists(marker):
            open(marker, "w").close()
            raise OSError("transient")
        if listed(self.mixin.crash_once, i) and not os.path.exists(marker):
            open(marker, "w").close()
            ctypes.string_at(0)
        with atomic_write(self._out(i)) as tmp, open(tmp, "w") as fh:
            fh.write("partial")
            fh.flush()
            if listed(self.mixin.hang_on, i):
                self._mark("pids", f"{i:04d}", str(os.getpid()))
                time.sleep(120)
            time.sleep(self.mixin.sleep)
            fh.write(f" done {i * i}")
