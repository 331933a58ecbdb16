"""A task file whose import takes 30 s (a heavy import), still loading when a test signals
the run."""

import time

time.sleep(30)

from dispatcher import Task  # noqa: E402


class Slow(Task):
    pass
