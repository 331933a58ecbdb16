"""The plainest task: one item, nothing done."""

from dispatcher import Task


class T(Task):
    def generate_tasks(self):
        return [{"i": 0}]

    def process(self, i):
        pass
