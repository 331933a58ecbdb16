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
from dispatcher.errors import EXIT_OK, EXIT_USAGE, UsageError
from dispatcher.runner.request import RESERVED, Invocation, option_hint

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


def parse_command_line(argv: list[str]) -> Invocation:
    inv = Invocation(argv=list(argv))
    errors: list[str] = []
    positionals: list[str] = []

    def placed() -> bool:
        """Whether the task's place is complete: a file and a class, or a package folder."""
        return len(positionals) >= 2 or (len(positionals) == 1 and os.path.isdir(positionals[0]))

    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if token in _HELP_KIND:
            inv.help = inv.help or _HELP_KIND[token]
            i += 1
        elif name in _WITH_VALUE:
            if eq:
                value, i = inline, i + 1
            elif i + 1 < len(argv):
                value, i = argv[i + 1], i + 2
            else:
                errors.append(f"{name} expects a value")
                break
            setattr(inv, _attribute(name), value)
            inv.given.add(_attribute(name))
        elif token in _FLAGS:
            setattr(inv, _attribute(token), True)
            inv.given.add(_attribute(token))
            i += 1
        elif name == "--mixin":
            items = [inline] if eq else []
            i += 1
            # Values run until the next option; before the task's place, only K=V tokens count.
            while i < len(argv) and not argv[i].startswith("-") and ("=" in argv[i] or placed()):
                items.append(argv[i])
                i += 1
            if not items:
                errors.append("--mixin expects at least one KEY=VALUE")
            inv.mixin.extend(items)
        elif not placed() and not token.startswith("-"):
            positionals.append(token)
            i += 1
        elif not placed():
            # Only a close likeness: this may well be a task's option, put too early.
            hint = option_hint(name, cutoff=0.8)
            errors.append(
                f"unrecognized option {name}{hint}"
                if hint.endswith("(see -hk)")
                else f"option {token} comes before TASK_FILE TASK_CLASS; "
                "task and backbone options go after them"
            )
            i += 1
        else:
            inv.rest.append(token)
            i += 1
    if positionals:
        inv.task_file = positionals[0]
    if len(positionals) > 1:
        inv.task_class = positionals[1]
    try:
        inv.grace = float(inv.grace)
        if inv.grace < 0:
            raise ValueError
    except ValueError:
        errors.append(f"--grace expects a number of seconds, got '{inv.grace}'")
    if inv.shard_mode not in ("hash", "index"):
        errors.append(f"--shard-mode expects hash or index, got '{inv.shard_mode}'")
    if errors and inv.help not in ("dispatcher", "version"):
        raise UsageError(*errors)
    return inv


def _attribute(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


_USAGE_PARTS = [
    "[--backbone NAME]",
    "[--cfg FILE]",
    "[--mixin-cfg FILE]",
    "[--mixin K=V ...]",
    "[--shard I/N|auto|all]",
    "[--shard-mode hash|index]",
    "[--plan]",
    "[--force]",
    "[--log-dir DIR]",
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
        inv = parse_command_line(argv)
        if inv.help == "version":
            print(f"shard-dispatch {__version__}")
            return EXIT_OK
        if inv.help == "dispatcher" or _wants_dispatcher_help(inv):
            print(dispatcher_help())
            return EXIT_OK
        from dispatcher.runner import execute as runner

        code = runner.run(inv)
    except UsageError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        from dispatcher.report.log import logger

        for message in exc.messages:
            logger.error(message)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (`dispatch -h | head`): no traceback, nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.stdout.flush()
    return code


_SLURM_VERBS = ("submit", "status")
"""`dispatch submit ...` / `dispatch status ...` (a file of that name is still a task file)."""


def _slurm_verb(verb: str, argv: list[str]) -> int:
    if verb == "submit":
        from dispatcher.slurm import submit as slurm_submit

        return slurm_submit.main(argv, parse_command_line)
    from dispatcher.slurm import status as slurm_status

    return slurm_status.main(argv, parse_command_line)


def _wants_dispatcher_help(inv: Invocation) -> bool:
    """`dispatch` alone, or `-h` with no task to describe: the dispatcher's own help."""
    if not inv.argv:
        return True
    return inv.help == "task" and not inv.task_file and not inv.cfg


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM before the run's own signal handling: end the process at once (143).

    Raising an exception instead could land inside an import that swallows it (torch's
    does), losing the signal; nothing has been written yet, so nothing needs unwinding.
    """
    os._exit(128 + signum)


def entry() -> None:
    code = main()
    # The run is over: spare the shutdown the collector's passes over every object the
    # run made (tens of ms after a run; what must still be closed is closed by refcount).
    gc.freeze()
    sys.exit(code)
