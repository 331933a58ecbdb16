"""The ClearML example, killing its whole process group after the row whose id is KILL_AT."""

import os
import signal
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "tasks" / "operators" / "clearml_example"
sys.path.insert(0, str(EXAMPLE))
from preprocess import Preprocess as Example  # noqa: E402


class Preprocess(Example):
    def postprocess(self, data, state, collect):
        result = super().postprocess(data, state, collect)
        if os.environ.get("KILL_AT") == str(state["id"]):
            os.killpg(os.getpgid(0), signal.SIGKILL)
        return result
