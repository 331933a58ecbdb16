"""Mode 2: the whole dataset at once. Stage it locally with moxing, write the result."""

import json
import os
import tempfile

import moxing as mox
import pandas as pd


class Process:
    def __init__(self, args):
        self.source = args["obs_input_path"]
        self.target = args["obs_output_path"]
        self.field = args.field

    def __call__(self, input: pd.DataFrame):
        seen = set()
        with tempfile.TemporaryDirectory() as local:
            mox.file.copy_parallel(self.source, local)
            mox.file.make_dirs(self.target)
            for name in mox.file.list_directory(local, recursive=True):
                if not name.endswith(".jsonl"):
                    continue
                kept = []
                for line in mox.file.read(os.path.join(local, name)).splitlines():
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    value = row.get(self.field)
                    if value in seen:
                        continue
                    seen.add(value)
                    kept.append(json.dumps(row, ensure_ascii=False) + "\n")
                out = os.path.join(self.target, name)
                mox.file.make_dirs(os.path.dirname(out))
                mox.file.write(out, "".join(kept))
