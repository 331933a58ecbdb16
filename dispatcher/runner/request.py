"""What one run asks for: the reserved options and the `Request` they fill.

The command line (`dispatcher/cli.py`) parses argv into a `Request`, `dispatcher.run(...)`
(`dispatcher/api.py`) builds one from its arguments; preparation and the run
(`dispatcher/runner/`) read that same object. The run takes these names from here, never
from the command line, so the two form no import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatcher.config.layers import rows_per_item_problems
from dispatcher.errors import UsageError, did_you_mean
from dispatcher.report.fail_fast import FIRST_ITEMS

# (spellings, metavar or None for a flag, help)
RESERVED: list[tuple[tuple[str, ...], str | None, str]] = [
    (
        ("--backbone",),
        "NAME",
        "execution engine: auto (default), serial, mp, torch, ray, or a plugin's",
    ),
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
    (
        ("--manifest",),
        "FILE",
        "read the items from a manifest (dispatch manifest) instead of walking the input; "
        "--shard I/N then runs its segment I",
    ),
    (
        ("--rows-per-item",),
        "N",
        "cut big JSONL, CSV and Parquet files into items of about N rows (row ranges), "
        "where the task reads rows (docs/rows.md)",
    ),
    (
        ("--max-failures",),
        "N",
        "stop after N failed items (exit 1); without it, a run whose first "
        f"{FIRST_ITEMS} items all fail stops too",
    ),
    (("--keep-going",), None, "run every item even if the first ones all fail"),
    (
        ("--limit",),
        "N",
        "a trial run: only the first N pending items (in plan order), real outputs",
    ),
    (("--plan",), None, "print items found, in this shard, done, to run; run nothing"),
    (("--force",), None, "reprocess items whose outputs already exist"),
    (("--log-dir",), "DIR", "where run records and failures go (default: ./dispatch-logs)"),
    (
        ("--progress-interval",),
        "SECONDS",
        "off a terminal (a SLURM log), a timestamped progress line this often (default 60)",
    ),
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
class Request:
    """One run's settings, from the command line or from `dispatcher.run(...)`.

    The command line gives the task's place (`task_file`, `task_class`), `--mixin` text and
    option words (`rest`); Python may give a class (`task_cls`), placeholder values
    (`mixin_values`) and options by name (`options`) instead. Preparation fills what a
    `--cfg` file names where the request named nothing (`take_cfg_settings`).
    """

    task_file: str | None = None
    task_class: str | None = None
    task_cls: type | None = None
    """A class given as an object (from Python); otherwise `task_file` and `task_class`."""
    backbone: str = "auto"
    cfg: str | None = None
    mixin_cfg: str | None = None
    mixin: list[str] = field(default_factory=list)
    """`--mixin` items, `K=V` text."""
    mixin_values: dict[str, Any] | None = None
    """Placeholder values from Python, the highest layer."""
    rest: list[str] = field(default_factory=list)
    """Task and backbone options as command-line words."""
    options: dict[str, Any] = field(default_factory=dict)
    """Task and backbone options from Python, by dest or spelling."""
    shard: str | None = None
    shard_mode: str = "hash"
    rows_per_item: int | None = None
    """`--rows-per-item N`: big files become items of about N rows (None: one per file)."""
    manifest: str | None = None
    """`--manifest FILE`: the items come from this manifest's segments, not a walk."""
    limit: int | None = None
    """`--limit N`: run only the first N pending items (a trial run)."""
    max_failures: int | None = None
    """`--max-failures N`: stop after N failed items."""
    keep_going: bool = False
    """`--keep-going`: no stop when the first items all fail."""
    plan_only: bool = False
    """`--plan`: print what would run, run nothing."""
    force: bool = False
    log_dir: str = "dispatch-logs"
    grace: float = 10.0
    progress_interval: float = 60.0
    """Seconds between progress lines off a terminal."""
    print_config: bool = False
    install: bool = False
    """`--install`: run the package's install script once before the run."""
    debug: bool = False
    help: str | None = None
    """Which help the command line asked for: task, backbone, dispatcher or version."""
    keep_outcomes: bool = False
    submitting: bool = False
    """Prepared to be submitted elsewhere (`dispatch submit`): every check, but no device is
    looked for and no install script is run; the backbone is not built."""
    argv: list[str] | None = None
    """The command line's words, for the run record (None from Python)."""
    given: set[str] = field(default_factory=set)
    """Settings the request named, which win over a `--cfg` file's."""
    invoked_in: str | None = None
    """The folder the request was made in, set by preparation: a replayed `--cfg` runs in
    the folder it was printed in (`printed_folder.py`), but this command line's words
    (a relative `--cfg`, say) still mean what they meant here."""

    def problems(self) -> list[str]:
        """The settings the command line's own parser checks, checked for a request from
        Python."""
        problems = []
        grace = self.grace
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
            problems.append(f"grace: expected a number of seconds, 0 or more, got {grace!r}")
        if self.shard_mode not in ("hash", "index"):
            problems.append(f"shard_mode: expected hash or index, got {self.shard_mode!r}")
        every = self.progress_interval
        if isinstance(every, bool) or not isinstance(every, (int, float)) or every <= 0:
            problems.append(f"progress_interval: expected seconds, more than 0, got {every!r}")
        if self.shard is not None and not isinstance(self.shard, str):
            problems.append(f"shard: expected 'I/N', 'auto' or 'all', got {self.shard!r}")
        problems += rows_per_item_problems("rows_per_item", self.rows_per_item)
        limit = self.limit
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            problems.append(f"limit: expected a number of items, 1 or more, got {limit!r}")
        return problems

    def names_task(self) -> bool:
        """Whether a task is named: a file and a class, or an operator package folder."""
        return bool(self.task_file and (self.task_class or os.path.isdir(self.task_file)))

    def task_place(self) -> tuple[str, str | None]:
        """(task file, class name); a package folder has no class name (None)."""
        if self.task_file and os.path.isdir(self.task_file):
            return self.task_file, self.task_class or None
        if not self.task_file or not self.task_class:
            raise UsageError(
                "TASK_FILE and TASK_CLASS are required (on the command line, or as task_file: "
                "and task_class: in --cfg), or an operator package folder; dispatch -h shows "
                "the usage"
            )
        return self.task_file, self.task_class

    def take_cfg_settings(self, settings: dict[str, Any]) -> None:
        """The run settings a `--cfg` file names, where the request named none.

        This is what lets `--print-config`'s output, given back to `--cfg`, run the same run.
        """
        # A class given as an object is the task, whatever the file names.
        if self.task_cls is None:
            if self.task_file is None and "task_file" in settings:
                self.task_file = settings["task_file"]
            if self.task_class is None and "task_class" in settings:
                self.task_class = settings["task_class"]
        for name in ("backbone", "shard", "shard_mode", "rows_per_item"):
            if name in settings and name not in self.given:
                setattr(self, name, settings[name])
        self.force = self.force or settings.get("force", False)


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
