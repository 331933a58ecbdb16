"""A plain task whose items carry a field process() lacks, and whose process() requires one
no item carries. Were it ever run, it would leave `ran` beside this file."""

import os

from dispatcher import Task


class T(Task):
    def generate_tasks(self):
        return [{"path": "a", "size": 1}, {"path": "b", "size": 2}]

    def process(self, path, mode):
        open(os.path.join(os.path.dirname(__file__), "ran"), "w").close()
