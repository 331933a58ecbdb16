"""A ClearML-serving `Preprocess` as the serving engine calls it: async preprocess,
`collect` for statistics, no process() (the identity), a row that raises on `boom`."""

import asyncio
import os


class Preprocess:
    seen_model = "unset"
    instances = 0

    def __init__(self):
        Preprocess.instances += 1
        self.instance = Preprocess.instances

    def load(self, local_file_name):
        self.seen_model = local_file_name

    async def preprocess(self, body, state, collect):
        assert state == {}, "state is fresh per request"
        state["n"] = body["n"]
        collect({"n": body["n"], "kind": body.get("kind", "plain")})
        collect({"kind": "last-wins"} if body.get("kind") == "twice" else {})
        await asyncio.sleep(0)
        if body.get("boom"):
            raise ValueError("boom at " + str(body["n"]))
        return body["n"]

    def postprocess(self, data, state, collect):
        # no process(): the identity, as a missing method is
        return {
            "n": data,
            "state": state["n"],
            "model": self.seen_model,
            "instance": self.instance,
            "pid": os.getpid(),
        }
