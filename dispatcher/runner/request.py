"""What one command line asks for: the reserved options, the `Invocation` they fill, exit codes.

The command line (`dispatcher/cli.py`) parses argv into an `Invocation` and calls the run
(`dispatcher/runner/execute.py`), which carries it out; the run takes these names from here, never
from the command line, so the two form no import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dispatcher.errors import did_you_mean

# (spellings, metavar or None for a flag, help)
RESERVED: list[tuple[tuple[str, ...], str | None, str]] = [
    (("--backbone",), "NAME", "execution engine: auto (default), serial, mp, torch, or a plugin's"),
    (
        ("--cfg",),
        "FILE",
        "YAML with task:, backbone: and mixin: sections, as --print-config writes it "
        "(lowest priority)",
    ),
    (("--mixin-cfg",), "FILE", "YAML filling the task's placeholders (over --cfg's mixin:)"),
    (("--mixin",), "K=V ...", "fill placeholders: dotted keys, YAML values (highest priority)"),
    (
        ("--shard",),
        "I/N|auto|all",
        "run shard I of N; auto reads SLURM array or torchrun variables; all: every item "
        "(needed in a SLURM array task, where a missing --shard is an error)",
    ),
    (
        ("--shard-mode",),
        "hash|index",
        "how --shard splits: hash of each item's key (default) or sorted index",
    ),
    (("--plan",), None, "print items found, in this shard, done, to run; run nothing"),
    (("--force",), None, "reprocess items whose outputs already exist"),
    (("--log-dir",), "DIR", "where run records and failures go (default: ./dispatch-logs)"),
    (
        ("--grace",),
        "SECONDS",
        "on SIGINT/SIGTERM, how long in-flight items may finish (default 10)",
    ),
    (
        ("--install",),
        None,
        "run the operator package's install script once before the run (output in the log "
        "directory)",
    ),
    (("--print-config",), None, "print the resolved configuration as YAML and exit"),
    (("--debug",), None, "show tracebacks for configuration errors"),
    (("-h", "--help"), None, "show the task's help: its options and placeholders"),
    (("-hb", "--help-backbone"), None, "show the chosen backbone's options"),
    (("-hk", "--help-dispatcher"), None, "show this help (also -h without a task)"),
    (("--version",), None, "print the version and exit"),
]


@dataclass
class Invocation:
    """The command line, split into reserved settings, the task's place, and the rest."""

    task_file: str | None = None
    task_class: str | None = None
    backbone: str = "auto"
    cfg: str | None = None
    mixin_cfg: str | None = None
    mixin: list[str] = field(default_factory=list)
    shard: str | None = None
    shard_mode: str = "hash"
    plan: bool = False
    force: bool = False
    log_dir: str = "dispatch-logs"
    grace: float = 10.0
    print_config: bool = False
    install: bool = False
    debug: bool = False
    help: str | None = None
    rest: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    given: set[str] = field(default_factory=set)
    """Settings the command line named, which win over a `--cfg` file's."""


RESERVED_SPELLINGS = [s for spellings, _, _ in RESERVED for s in spellings]


def option_hint(name: str, declared: Sequence[str] = (), cutoff: float = 0.6) -> str:
    """' (did you mean 'X'?) (see -hk)': the closest option, and the help that lists it.

    The dispatcher's own options are candidates too, so `--froce` finds `--force`.
    """
    reserved = [s for s in RESERVED_SPELLINGS if s.startswith("--")]
    hint = did_you_mean(name, [*declared, *reserved], cutoff)
    if hint and hint.split("'")[1] in reserved:
        return f"{hint} (see -hk)"
    return f"{hint} (see -h and -hb)"
