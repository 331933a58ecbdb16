"""Third-party backbones: a package registers one under the `dispatcher.backbones` entry points.

The test builds a throwaway package in a temp dir, pip-installs it into this environment
(offline: no dependencies, no build isolation), runs a task on it, and uninstalls it.
"""

from __future__ import annotations

import uuid

import pytest
from conftest import installed_package, run_dispatch, run_record, task_file, write_file

from backbones import registry

STAMP = task_file("stage_stamp")

PLUGIN = '''
"""A third-party backbone: runs items in this process, in reverse order."""

from backbones import Backbone
from dispatcher.execution.steps import run_batch


class ReverseBackbone(Backbone):
    name = "{name}"
    summary = "Runs items last-first, in the parent process (a test plugin)."

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--stamp", default="plain", help="text written beside each output")

    def run(self, stage, items, reporter, stop):
        stage.task.stamp = self.options.stamp
        stage.setup()
        try:
            for item in reversed(items):
                if stop.is_set():
                    break
                for outcome in run_batch(stage, [item]):
                    reporter.record_outcome(outcome)
        finally:
            stage.teardown()
'''

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.0.1"

[project.entry-points."dispatcher.backbones"]
{name} = "{module}:ReverseBackbone"

[tool.setuptools]
py-modules = ["{module}"]
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory):
    suffix = uuid.uuid4().hex[:8]
    name, module = f"reverse-{suffix}", f"dispatch_reverse_{suffix}"
    dist = f"dispatch-test-plugin-{suffix}"
    root = tmp_path_factory.mktemp("plugin")
    write_file(root / "pyproject.toml", PYPROJECT.format(dist=dist, name=name, module=module))
    write_file(root / f"{module}.py", PLUGIN.format(name=name))
    with installed_package(root, dist):
        yield name


@pytest.mark.slow
def test_an_installed_plugin_runs_a_task_and_shows_its_options(plugin, tmp_path):
    task = STAMP
    out = tmp_path / "out"
    logs = tmp_path / "logs"

    done = run_dispatch(
        str(task),
        "Stamp",
        "--backbone",
        plugin,
        "--stamp",
        "from-plugin",
        "--log-dir",
        str(logs),
        "--mixin",
        f"out={out}",
    )
    assert done.returncode == 0, done.stderr
    assert (out / "order.log").read_text().split() == ["4", "3", "2", "1", "0"]
    assert {p.read_text() for p in out.glob("*.txt")} == {"from-plugin"}
    record = run_record(logs, "Stamp")
    assert record["config"]["backbone"] == {"name": plugin, "options": {"stamp": "from-plugin"}}

    helped = run_dispatch(str(task), "Stamp", "--backbone", plugin, "-hb")
    assert helped.returncode == 0, helped.stderr
    assert f"backbone '{plugin}': Runs items last-first" in helped.stdout
    assert "--stamp" in helped.stdout and "text written beside each output" in helped.stdout

    unknown = run_dispatch(
        str(task), "Stamp", "--backbone", "no-such-engine", "--mixin", f"out={out}"
    )
    assert unknown.returncode == 2
    assert "unknown backbone 'no-such-engine'" in unknown.stderr
    known = unknown.stderr.split("known:", 1)[1]
    for name in ("auto", "serial", "mp", "torch", plugin):
        assert name in known

    wrong = run_dispatch(
        str(task), "Stamp", "--backbone", plugin, "--num-process", "2", "--mixin", f"out={out}"
    )
    assert wrong.returncode == 2 and "unrecognized option --num-process" in wrong.stderr


def test_an_unknown_backbone_lists_the_known_ones(tmp_path):
    import dispatcher

    task = STAMP
    with pytest.raises(dispatcher.UsageError) as caught:
        dispatcher.run(f"{task}:Stamp", {"out": str(tmp_path / "out")}, backbone="mpp")
    err = caught.value.messages
    assert len(err) == 1
    assert err[0].startswith("unknown backbone 'mpp' (known: auto, serial, mp, torch")
    assert not (tmp_path / "out").exists()


def test_every_builtin_backbone_loads_and_auto_picks_by_task_type():
    from dispatcher import Task, TorchTask
    from dispatcher.stage import adapter_for

    for name in ("serial", "mp", "torch"):
        cls = registry.load(name)
        assert cls.name == name
    plain, torch_stage = adapter_for(Task), adapter_for(TorchTask)
    assert registry.auto_choice(plain) == "mp"
    assert registry.resolve("auto", Task, plain).name == "mp"
    assert registry.auto_choice(torch_stage) == "torch"


def test_an_engine_written_for_the_earlier_run_signature_still_runs():
    """The core hands engines a RunContext; one whose `run` takes (stage, items, reporter,
    stop) gets those instead."""
    from dispatcher.engines import Backbone, RunContext, run_engine

    seen = []

    class Earlier(Backbone):
        def run(self, stage, items, reporter, stop):
            seen.append(("earlier", stage, items, reporter, stop))

    class Current(Backbone):
        def run(self, context):
            seen.append(("current", context))

    context = RunContext("stage", [("a", None)], "reporter", "stop")  # type: ignore[arg-type]
    run_engine(Earlier(None), context)  # type: ignore[arg-type]
    run_engine(Current(None), context)  # type: ignore[arg-type]
    assert seen == [
        ("earlier", "stage", [("a", None)], "reporter", "stop"),
        ("current", context),
    ]
