"""A task that declares a module it needs, which is not installed."""

from dispatcher import Task


class T(Task):
    requires = {"no_such_module_for_dispatch": "extra-x", "json": "never-needed"}

    def generate_tasks(self):
        return [{"i": 0}]

    def process(self, i):
        pass
