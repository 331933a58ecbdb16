"""A task file whose import sleeps 30 s and swallows every exception meanwhile, as some
extension modules (torch among them) do while importing."""

import time

try:  # noqa: SIM105 (the plain form such imports have)
    time.sleep(30)
except BaseException:
    pass

from dispatcher import Task  # noqa: E402


class Slow(Task):
    def generate_tasks(self):
        return [{"i": 0}]

    def process(self, i):
        pass
