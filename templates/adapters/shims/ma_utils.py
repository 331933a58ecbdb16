"""`ma_utils`, as ModelArts operator code imports it: `FileLogger.get_logger()`.

The log goes to `operator.log` in the run's log directory and its warnings to stderr, never
into the output root. Operator modules ask for the logger at import, before the run's log
directory exists, so the file is found when a record is written: `RUN_DIR`, which the
operator adapter sets in every worker when it sets up (records before that are dropped).
"""

from __future__ import annotations

import logging
import os

LOGGER_NAME = "modelarts.operator"
LOG_FILE = "operator.log"
RUN_DIR: str | None = None
"""The run's log directory, set by the adapter in each worker before the operator runs."""


class RunLogHandler(logging.Handler):
    """Appends records to the current run's `operator.log` (opened on first use per run)."""

    def __init__(self) -> None:
        super().__init__()
        self._path: str | None = None
        self._stream: object = None

    def emit(self, record: logging.LogRecord) -> None:
        run_dir = RUN_DIR
        if not run_dir:
            return
        path = os.path.join(run_dir, LOG_FILE)
        try:
            if path != self._path:
                self._close()
                os.makedirs(run_dir, exist_ok=True)
                self._stream = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (kept open)
                self._path = path
            self._stream.write(self.format(record) + "\n")  # type: ignore[attr-defined]
        except Exception:
            self.handleError(record)

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.close()  # type: ignore[attr-defined]
        self._stream = self._path = None

    def close(self) -> None:
        self._close()
        super().close()


class FileLogger:
    @staticmethod
    def get_logger(name: str = LOGGER_NAME) -> logging.Logger:
        logger = logging.getLogger(name)
        if not any(isinstance(h, RunLogHandler) for h in logger.handlers):
            fmt = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s")
            to_file = RunLogHandler()
            to_file.setFormatter(fmt)
            to_stderr = logging.StreamHandler()
            to_stderr.setLevel(logging.WARNING)
            to_stderr.setFormatter(fmt)
            logger.addHandler(to_file)
            logger.addHandler(to_stderr)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        return logger
