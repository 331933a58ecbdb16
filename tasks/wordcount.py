"""Count the words of every .txt file under an input folder: the smallest complete task.

    dispatch tasks/wordcount.py WordCount --backbone serial \
        --mixin input=tasks/data/text output=out/wordcount
"""

from __future__ import annotations

import json
import os
from collections import Counter

from dispatcher import Placeholder, Task, atomic_write


class WordCount(Task):
    """Writes OUTPUT/<file>.json with the word counts of each INPUT/**/<file>.txt."""

    mixin = {
        "input": Placeholder(str, help="folder of .txt files"),
        "output": Placeholder(str, help="folder the .json counts go to"),
        "top": Placeholder(int, default=10, help="how many of the most common words to keep"),
        "lowercase": Placeholder(bool, default=True, help="fold case before counting"),
    }

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--min-length", type=int, default=1, help="ignore shorter words")

    def validate(self):
        if not os.path.isdir(self.mixin.input):
            return [f"mixin 'input': input folder {self.mixin.input} does not exist"]
        return []

    def input_roots(self):
        return [self.mixin.input]

    def output_roots(self):
        return [self.mixin.output]

    def generate_tasks(self):
        root = self.mixin.input
        for folder, _, files in os.walk(root):
            for name in files:
                if name.endswith(".txt"):
                    rel = os.path.relpath(os.path.join(folder, name), root)
                    yield {"path": rel}

    def item_key(self, item):
        return item["path"]

    def _output(self, path):
        return os.path.join(self.mixin.output, path + ".json")

    def is_executed(self, path):
        return os.path.exists(self._output(path))

    def process(self, path):
        with open(os.path.join(self.mixin.input, path), encoding="utf-8") as fh:
            text = fh.read()
        words = text.lower().split() if self.mixin.lowercase else text.split()
        words = [w for w in words if len(w) >= self.args.min_length]
        counts = Counter(words).most_common(self.mixin.top)
        with atomic_write(self._output(path)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"source": path, "words": len(words), "top": counts}, fh)
