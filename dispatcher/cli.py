"""`dispatch`: read the command line, run, and turn every outcome into an exit code.

Reserved options are recognised anywhere on the line, by their exact spelling only (no
abbreviation matching, so `-h`, `-hb` and `-hk` never swallow each other). Everything
after TASK_FILE TASK_CLASS (or an operator package's PACKAGE_DIR, which names no class)
that is not reserved goes to the backbone and the task.

Exit codes: 0 every item succeeded; 1 some item failed; 2 usage or configuration error;
130 / 143 interrupted by SIGINT / SIGTERM.
"""

from __future__ import annotations

import gc
import os
import signal
import sys

from dispatcher import __version__
from dispatcher.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_USAGE,
    UsageError,
    signal_exit_code,
)
from dispatcher.runner.request import RESERVED, Request, option_hint

_HELP_KIND = {
    "-h": "task",
    "--help": "task",
    "-hb": "backbone",
    "--help-backbone": "backbone",
    "-hk": "dispatcher",
    "--help-dispatcher": "dispatcher",
    "--version": "version",
}
_WITH_VALUE = {s[0] for s, meta, _ in RESERVED if meta is not None and s[0] != "--mixin"}
_FLAGS = {s[0] for s, meta, _ in RESERVED if meta is None} - set(_HELP_KIND)


_FIELD = {"--plan": "plan_only"}
"""Reserved options whose `Request` field is not their spelling's."""


def _field(option: str) -> str:
    return _FIELD.get(option) or option.lstrip("-").replace("-", "_")


def parse_command_line(argv: list[str]) -> Request:
    """The run a command line asks for; its mistakes are raised together (UsageError)."""
    reader = _Reader(list(argv))
    reader.read()
    request, errors = reader.request, reader.errors
    if reader.positionals:
        request.task_file = reader.positionals[0]
    if len(reader.positionals) > 1:
        request.task_class = reader.positionals[1]
    errors += _value_problems(request)
    if errors and request.help not in ("dispatcher", "version"):
        raise UsageError(*errors)
    return request


def _value_problems(request: Request) -> list[str]:
    """`--grace` and `--shard-mode` values the run cannot take (`grace` becomes a float)."""
    errors = []
    try:
        request.grace = float(request.grace)
        if request.grace < 0:
            raise ValueError
    except ValueError:
        errors.append(f"--grace expects a number of seconds, got '{request.grace}'")
    if request.shard_mode not in ("hash", "index"):
        errors.append(f"--shard-mode expects hash or index, got '{request.shard_mode}'")
    try:
        request.progress_interval = float(request.progress_interval)
        if not request.progress_interval > 0:
            raise ValueError
    except ValueError:
        errors.append(
            f"--progress-interval expects a number of seconds, more than 0, "
            f"got '{request.progress_interval}'"
        )
    for name, what in (("rows_per_item", "rows"), ("limit", "items"), ("max_failures", "items")):
        value = getattr(request, name)
        if value is None:
            continue
        text = str(value)
        if text.isascii() and text.isdigit() and int(text) >= 1:
            setattr(request, name, int(text))
        else:
            option = "--" + name.replace("_", "-")
            errors.append(f"{option} expects a number of {what}, 1 or more, got '{text}'")
    return errors


class _Reader:
    """Reads a command line word by word into a `Request`, collecting every mistake."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.request = Request(argv=list(argv))
        self.errors: list[str] = []
        self.positionals: list[str] = []
        self.i = 0

    def placed(self) -> bool:
        """Whether the task's place is complete: a file and a class, or a package folder."""
        given = self.positionals
        return len(given) >= 2 or (len(given) == 1 and os.path.isdir(given[0]))

    def read(self) -> None:
        while self.i < len(self.argv):
            token = self.argv[self.i]
            name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
            self.i += 1
            if token in _HELP_KIND:
                self.request.help = self.request.help or _HELP_KIND[token]
            elif name in _WITH_VALUE:
                if not self._setting(name, inline if eq else None):
                    break
            elif token in _FLAGS:
                setattr(self.request, _field(token), True)
                self.request.given.add(_field(token))
            elif name == "--mixin":
                self._mixin(inline if eq else None)
            elif not self.placed() and not token.startswith("-"):
                self.positionals.append(token)
            elif not self.placed():
                self._too_early(token, name)
            else:
                self.request.rest.append(token)

    def _setting(self, name: str, inline: str | None) -> bool:
        """`--name VALUE` or `--name=VALUE`; False when the line ends without the value."""
        value = inline
        if value is None:
            if self.i >= len(self.argv):
                self.errors.append(f"{name} expects a value")
                return False
            value = self.argv[self.i]
            self.i += 1
        setattr(self.request, _field(name), value)
        self.request.given.add(_field(name))
        return True

    def _mixin(self, inline: str | None) -> None:
        items = [inline] if inline is not None else []
        argv = self.argv
        # Values run until the next option; before the task's place, only K=V tokens count.
        while (
            self.i < len(argv)
            and not argv[self.i].startswith("-")
            and ("=" in argv[self.i] or self.placed())
        ):
            items.append(argv[self.i])
            self.i += 1
        if not items:
            self.errors.append("--mixin expects at least one KEY=VALUE")
        self.request.mixin.extend(items)

    def _too_early(self, token: str, name: str) -> None:
        # Only a close likeness: this may well be a task's option, put too early.
        hint = option_hint(name, cutoff=0.8)
        self.errors.append(
            f"unrecognized option {name}{hint}"
            if hint.endswith("(see -hk)")
            else f"option {token} comes before TASK_FILE TASK_CLASS; "
            "task and backbone options go after them"
        )


_USAGE_PARTS = [
    "[--backbone NAME]",
    "[--cfg FILE]",
    "[--mixin-cfg FILE]",
    "[--mixin K=V ...]",
    "[--shard I/N|auto|all]",
    "[--shard-mode hash|index]",
    "[--manifest FILE]",
    "[--rows-per-item N]",
    "[--max-failures N]",
    "[--keep-going]",
    "[--limit N]",
    "[--plan]",
    "[--force]",
    "[--log-dir DIR]",
    "[--progress-interval SECONDS]",
    "[--grace SECONDS]",
    "[--print-config]",
    "[--debug]",
    "[-h]",
    "[-hb]",
    "[-hk]",
    "[--version]",
    "[--install]",
    "(TASK_FILE TASK_CLASS | PACKAGE_DIR)",
    "[task and backbone options ...]",
]


def _wrap_usage(prog: str, parts: list[str], width: int = 88) -> str:
    """argparse-style usage: break only between options, continuation lines indented."""
    indent = " " * len(prog)
    lines, line = [], prog.rstrip()
    for part in parts:
        if len(line) + 1 + len(part) > width and line.strip():
            lines.append(line)
            line = indent + part
        else:
            line = f"{line} {part}"
    return "\n".join([*lines, line])


USAGE = _wrap_usage("usage: dispatch ", _USAGE_PARTS)


def _option_row(left: str, text: str, column: int = 26, width: int = 88) -> str:
    """One help row: the option, then its text wrapped in a column, as argparse lays it out."""
    import textwrap

    body = textwrap.wrap(text, width - column - 2, break_on_hyphens=False) or [""]
    first = f"  {left:<{column}}" if len(left) < column else f"  {left}\n  {'':<{column}}"
    return first + ("\n  " + " " * column).join(body)


def dispatcher_help() -> str:
    lines = [
        USAGE,
        "",
        "Run a task over every item of a dataset, in shards, skipping what is done.",
        "",
        "positional arguments:",
        _option_row("TASK_FILE", "Python file defining the task"),
        _option_row(
            "TASK_CLASS",
            "the task class in it (both may instead come from --cfg: --print-config "
            "writes a file that reproduces the run)",
        ),
        _option_row(
            "PACKAGE_DIR",
            "instead of both: an operator package folder (NAME/program_package/process.py)",
        ),
        "",
        "reserved options:",
    ]
    for spellings, meta, text in RESERVED:
        lines.append(_option_row(", ".join(spellings) + (f" {meta}" if meta else ""), text))
    lines += [
        "",
        "SLURM: dispatch submit --array N [options] -- COMMAND; dispatch status COMMAND",
        "       (COMMAND: the task and its options as above; see dispatch submit -h)",
        "manifest: dispatch manifest --shards N [--output FILE] -- COMMAND walks once",
        "",
        "exit codes: 0 all items succeeded, 1 some failed, 2 usage or configuration error",
        "            (nothing ran) or malformed input (named; the other items ran),",
        "            130 / 143 interrupted by SIGINT / SIGTERM",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    # Until the run installs its own handler, SIGTERM ends configuration at once:
    # nothing has been written yet. (SIGINT already raises KeyboardInterrupt.)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if argv and argv[0] in _SLURM_VERBS and not os.path.exists(argv[0]):
            return _slurm_verb(argv[0], argv[1:])
        request = parse_command_line(argv)
        if request.help == "version":
            print(f"shard-dispatch {__version__}")
            return EXIT_OK
        if request.help == "dispatcher" or _wants_dispatcher_help(request):
            print(dispatcher_help())
            return EXIT_OK
        from dispatcher.runner import execute as runner

        code = runner.run(request)
    except UsageError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        from dispatcher.report.log import logger

        for message in exc.messages:
            logger.error(message)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = EXIT_SIGINT
    except BrokenPipeError:
        # The reader went away (`dispatch -h | head`): no traceback, nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.stdout.flush()
    return code


_SLURM_VERBS = ("submit", "status", "manifest")
"""`dispatch submit ...` / `status ...` / `manifest ...` (a file of that name is still a task
file)."""


def _slurm_verb(verb: str, argv: list[str]) -> int:
    if verb == "submit":
        from dispatcher.slurm import submit as slurm_submit

        return slurm_submit.main(argv, parse_command_line)
    if verb == "manifest":
        from dispatcher.slurm import manifest_command

        return manifest_command.main(argv, parse_command_line)
    from dispatcher.slurm import status as slurm_status

    return slurm_status.main(argv, parse_command_line)


def _wants_dispatcher_help(request: Request) -> bool:
    """`dispatch` alone, or `-h` with no task to describe: the dispatcher's own help."""
    if not request.argv:
        return True
    return request.help == "task" and not request.task_file and not request.cfg


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM before the run's own signal handling: end the process at once (143).

    Raising an exception instead could land inside an import that swallows it (torch's
    does), losing the signal; nothing has been written yet, so nothing needs unwinding.
    """
    os._exit(signal_exit_code(signum))


def entry() -> None:
    code = main()
    # The run is over: spare the shutdown the collector's passes over every object the
    # run made (tens of ms after a run; what must still be closed is closed by refcount).
    gc.freeze()
    sys.exit(code)
