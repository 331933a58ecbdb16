"""A ClearML-serving preprocessing class, unchanged, run over JSONL files.

    dispatch tasks/operators/clearml_example/preprocess.py Preprocess \
        --mixin input=tasks/operators/clearml_example/data output=/tmp/sentiment \
        model=tasks/operators/clearml_example/model.json

Each row `{"id": ..., "text": ...}` becomes `{"id": ..., "label": ..., "score": ...}`
from a keyword-weight "model"; the number of tokens per request is sent to the
statistics collector, which the run summary aggregates.
"""

import json
import re
from collections.abc import Callable
from typing import Any

TOKEN = re.compile(r"[a-z']+")


class Preprocess:
    def __init__(self):
        # Called once per worker, never per request.
        self.model_endpoint = None
        self.weights = {}

    def load(self, local_file_name: str | None) -> Any:
        if local_file_name:
            with open(local_file_name) as fh:
                self.weights = json.load(fh)
        return self.weights

    def preprocess(
        self,
        body: bytes | dict,
        state: dict,
        collect_custom_statistics_fn: Callable[[dict], None] | None,
    ) -> Any:
        state["id"] = body.get("id")
        tokens = TOKEN.findall(body["text"].lower())
        if collect_custom_statistics_fn:
            collect_custom_statistics_fn({"tokens": len(tokens)})
        return tokens

    def process(self, data: Any, state: dict, collect_custom_statistics_fn=None) -> Any:
        return sum(self.weights.get(token, 0.0) for token in data)

    def postprocess(self, data: Any, state: dict, collect_custom_statistics_fn=None) -> dict:
        label = "positive" if data > 0 else "negative" if data < 0 else "neutral"
        if collect_custom_statistics_fn:
            collect_custom_statistics_fn({"label": label})
        return {"id": state["id"], "label": label, "score": round(data, 3)}
