"""The aiges example, killing its whole process group after the row whose text is KILL_AT."""

import os
import signal
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "tasks" / "operators" / "aiges_example"
sys.path.insert(0, str(EXAMPLE))
from wrapper import Wrapper as Example  # noqa: E402


class Wrapper(Example):
    def wrapperOnceExec(self, params, reqData):
        response = super().wrapperOnceExec(params, reqData)
        if os.environ.get("KILL_AT") == reqData.get("text").data.decode():
            os.killpg(os.getpgid(0), signal.SIGKILL)
        return response
