"""Count the words of every .txt file under an input folder: the smallest complete task.

    dispatch tasks/wordcount.py WordCount --backbone serial \
        --mixin input=tasks/data/text output=out/wordcount

`input` and `output` may be folders, `file://` paths or `s3://` / `obs://` prefixes
(`pip install -e ".[s3]"`): the same code lists, reads and commits through
`dispatcher.storage` and `atomic_write`.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

from dispatcher import Placeholder, Task, atomic_write
from dispatcher.storage import exists, is_url, join, list_files, local, local_copy


class WordCount(Task):
    """Writes OUTPUT/<file>.json with the word counts of each INPUT/**/<file>.txt."""

    mixin = {
        "input": Placeholder(str, help="folder of .txt files"),
        "output": Placeholder(str, help="folder the .json counts go to"),
        "top": Placeholder(int, default=10, help="how many of the most common words to keep"),
        "lowercase": Placeholder(bool, default=True, help="fold case before counting"),
        "pause": Placeholder(
            float, default=0.0, help="seconds to wait on each file: time to watch a run, or stop it"
        ),
    }

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--min-length", type=int, default=1, help="ignore shorter words")

    def validate(self):
        # A bucket is checked by the dispatcher itself (one small LIST, before any work).
        if not is_url(self.mixin.input) and not os.path.isdir(local(self.mixin.input)):
            return [f"mixin 'input': input folder {self.mixin.input} does not exist"]
        return []

    def input_roots(self):
        return [self.mixin.input]

    def output_roots(self):
        return [self.mixin.output]

    def generate_tasks(self):
        # A folder, a file:// path or an s3:// / obs:// prefix alike: one listing.
        for rel in list_files(self.mixin.input, suffix=".txt"):
            yield {"path": rel}

    def item_key(self, item):
        return item["path"]

    def _output(self, path):
        return join(self.mixin.output, path + ".json")

    def is_executed(self, path):
        # Answered from one listing of the output root per run, not a request per item.
        return exists(self._output(path), root=self.mixin.output)

    def process(self, path):
        time.sleep(self.mixin.pause)
        with local_copy(join(self.mixin.input, path)) as src, open(src, encoding="utf-8") as fh:
            text = fh.read()
        words = text.lower().split() if self.mixin.lowercase else text.split()
        words = [w for w in words if len(w) >= self.args.min_length]
        counts = Counter(words).most_common(self.mixin.top)
        with atomic_write(self._output(path)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"source": path, "words": len(words), "top": counts}, fh)
