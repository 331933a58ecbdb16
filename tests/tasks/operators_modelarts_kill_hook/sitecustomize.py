"""Imported at start-up (on PYTHONPATH): the ModelArts stage kills its whole process group
right after writing the row whose key is CRASH_AT, before that output is committed."""

import os
import signal

from templates.adapters import modelarts

_write_row = modelarts.ModelArtsStage.write_row


def write_row(self, i, size, row, result, outputs):
    _write_row(self, i, size, row, result, outputs)
    if os.environ.get("CRASH_AT") == row[0]:  # written, not yet committed
        os.killpg(os.getpgid(0), signal.SIGKILL)


modelarts.ModelArtsStage.write_row = write_row
