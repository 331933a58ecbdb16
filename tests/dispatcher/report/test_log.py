"""The `dispatcher` logger: its lines, its one handler, and the progress display."""

from __future__ import annotations

import io
import logging

from dispatcher.report import log
from dispatcher.report.counts import Counts
from dispatcher.report.reporter import Progress, Reporter


def _handlers() -> list[logging.Handler]:
    return [h for h in log.logger.handlers if isinstance(h, log.StderrHandler)]


def test_lines_keep_their_prefix_and_level_word(capsys):
    log.logger.info("nothing to do: 3 items")
    log.note("a note")
    log.logger.warning("a warning")
    log.logger.error("an error")
    log.logger.info("2 of 4 shards complete", extra={"bare": True})
    assert capsys.readouterr().err.splitlines() == [
        "dispatch: nothing to do: 3 items",
        "dispatch: note: a note",
        "dispatch: warning: a warning",
        "dispatch: error: an error",
        "2 of 4 shards complete",
    ]


def test_configure_is_idempotent_and_nothing_propagates(capsys):
    for _ in range(5):
        log.configure()
    assert len(_handlers()) == 1 and not log.logger.propagate
    log.logger.info("once")
    assert capsys.readouterr().err == "dispatch: once\n"


def test_stderr_is_looked_up_when_a_line_is_written(monkeypatch):
    replaced = io.StringIO()
    monkeypatch.setattr("sys.stderr", replaced)
    log.note("here")
    assert replaced.getvalue() == "dispatch: note: here\n"


def test_lines_go_through_the_progress_display_while_it_is_shown(tmp_path, capsys):
    stream = io.StringIO()
    reporter = Reporter(str(tmp_path / "run"), Counts(to_run=2), {}, stream=stream, interval=3600)
    reporter.note("a worker was replaced")
    log.logger.info("from elsewhere")
    assert "dispatch: a worker was replaced\ndispatch: from elsewhere\n" in stream.getvalue()
    assert capsys.readouterr().err == ""
    reporter.finish(None)
    log.logger.info("after the run")
    assert capsys.readouterr().err == "dispatch: after the run\n"


def test_a_progress_bar_writes_a_line_without_tearing(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(10, stream, interval=0)
    progress.update(3, 0)
    log.note("beside the bar")
    progress.close()
    text = stream.getvalue()
    assert "dispatch: note: beside the bar\n" in text
    assert text.index("beside the bar") < text.rindex("3/10")  # the bar is drawn again after it
