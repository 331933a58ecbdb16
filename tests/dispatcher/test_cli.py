"""The command line: reserved options, help screens, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, dispatch_here, task_file, tree, write_file

from dispatcher.outputs.records import is_provenance_name


@pytest.fixture
def echo():
    return task_file("cli_echo")


def outputs(out):
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def test_serial_run_receives_mixin_and_options(echo, tmp_path):
    out = tmp_path / "out"
    proc = dispatch_here(
        echo,
        "Echo",
        "--backbone",
        "serial",
        "--mixin",
        f"output={out}",
        "n=3",
        "nested.deep.value=4",
        "--shout",
        "--words",
        "a",
        "b",
        "--level",
        "7",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    got = outputs(out)
    assert sorted(got) == ["item0", "item1", "item2"]
    assert got["item0"] == {
        "name": "item0",
        "mode": "fast",
        "deep": 4.0,
        "tags": ["a", "b"],
        "words": ["A", "B"],
        "level": 7,
    }


def test_rerun_does_nothing_and_says_so(echo, tmp_path):
    out = tmp_path / "out"
    args = (echo, "Echo", "--backbone", "serial", "--mixin", f"output={out}")
    assert dispatch_here(*args, cwd=tmp_path).returncode == 0
    before = tree(out)
    again = dispatch_here(*args, cwd=tmp_path)
    assert again.returncode == 0
    assert "nothing to do" in again.stderr
    assert tree(out) == before


def test_reserved_options_work_after_positionals_and_before(echo, tmp_path):
    out = tmp_path / "out"
    proc = dispatch_here(
        "--mixin", f"output={out}", "n=1", echo, "Echo", "--backbone", "serial", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert list(outputs(out)) == ["item0"]


def test_hk_lists_every_reserved_option():
    proc = dispatch_here("-hk")
    assert proc.returncode == 0
    for option in [
        "--backbone",
        "--cfg",
        "--mixin-cfg",
        "--mixin",
        "--shard",
        "--plan",
        "--force",
        "--print-config",
        "--debug",
        "--log-dir",
        "-h",
        "-hb",
        "-hk",
    ]:
        assert option in proc.stdout


def test_h_shows_task_options_and_placeholders_not_dispatcher_help(echo):
    proc = dispatch_here(echo, "Echo", "-h")
    assert proc.returncode == 0, proc.stderr
    assert "--shout" in proc.stdout and "--words" in proc.stdout
    assert "n (int, default 2)" in proc.stdout and "how many items" in proc.stdout
    assert "nested.deep.value (float, default 1.5)" in proc.stdout
    assert "output (any, required)" in proc.stdout
    choices = next(line for line in proc.stdout.splitlines() if "one of fast, slow" in line)
    assert choices.strip().startswith("mode (one of fast, slow; default")  # one line
    assert "--mixin-cfg FILE" not in proc.stdout  # -h is not swallowed by -hb / -hk


def test_hb_shows_the_backbone(echo):
    proc = dispatch_here(echo, "Echo", "--backbone", "serial", "-hb")
    assert proc.returncode == 0
    assert "backbone 'serial'" in proc.stdout


def test_print_config_resolves_everything(echo, tmp_path):
    import yaml

    cfg = write_file(
        tmp_path / "c.yaml",
        """
        task:
          shout: true
          words: [x, y]
        mixin:
          output: ${cfg_dir}/out
          n: 5
    """,
    )
    proc = dispatch_here(echo, "Echo", "--backbone", "serial", "--cfg", cfg, "--print-config")
    assert proc.returncode == 0, proc.stderr
    conf = yaml.safe_load(proc.stdout)
    assert conf["mixin"]["output"] == f"{tmp_path}/out"
    assert conf["mixin"]["n"] == 5
    assert conf["task"] == {"shout": True, "words": ["x", "y"], "level": 0}
    assert conf["backbone"]["name"] == "serial"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.py", "X"], "task file not found: missing.py"),
        (["{dir}", "X"], "is a directory"),
        (["{txt}", "X"], "is not a Python file"),
        (["{syntax}", "X"], "syntax error in {syntax}:3"),
        (["{badimport}", "X"], "imports module 'no_such_module_xyz'"),
        (["{echo}", "Echoo"], "no class 'Echoo' in {echo} (task classes there: Echo)"),
        (["{notask}", "Plain"], "'Plain' in {notask} is not a task class"),
        (["{echo}", "Echo", "--mixin", "n=3"], "unfilled placeholder 'output'"),
        (
            ["{echo}", "Echo", "--mixin", "output=o", "soft_shard.shard_nun=2"],
            "unknown mixin key 'soft_shard.shard_nun'",
        ),
        (
            ["{echo}", "Echo", "--mixin", "output=o", "nested.deep.valeu=2"],
            "unknown mixin key 'nested.deep.valeu' (did you mean 'nested.deep.value'?)",
        ),
        (
            ["{echo}", "Echo", "--mixin", "output=o", "n=abc"],
            "mixin 'n': expected an integer, got 'abc'",
        ),
        (
            ["{echo}", "Echo", "--mixin", "output=o", "mode=medium"],
            "mixin 'mode': 'medium' is not one of ['fast', 'slow']",
        ),
        (["{echo}", "Echo", "--mixin", "output=o", "oops"], "--mixin item 'oops' has no '='"),
        (
            ["{echo}", "Echo", "--mixin", "output=o", "--levle", "3"],
            "unrecognized option --levle (did you mean '--level'?)",
        ),
        (
            ["{echo}", "Echo", "--mixin", "output=o", "--level", "x"],
            "argument --level: invalid int value: 'x'",
        ),
        (
            ["{echo}", "Echo", "--mixin-cfg", "{badyaml}", "--mixin", "output=o"],
            "malformed YAML in --mixin-cfg {badyaml}:2",
        ),
        (
            ["{echo}", "Echo", "--cfg", "{badsection}", "--mixin", "output=o"],
            "unknown section 'mixn' (did you mean 'mixin'?)",
        ),
        (
            ["{echo}", "Echo", "--backbone", "nope", "--mixin", "output=o"],
            "unknown backbone 'nope' (known: auto, serial, mp, torch",
        ),
        (
            ["{echo}", "Echo", "--shard", "3/2", "--mixin", "output=o"],
            "--shard 3/2: shard 3 is out of range for 2 shards",
        ),
        (["{echo}", "Echo", "--shard", "x", "--mixin", "output=o"], "--shard expects I/N"),
        (["{echo}"], "TASK_FILE and TASK_CLASS are required"),
    ],
)
def test_errors_are_one_line_exit_2_and_write_nothing(tmp_path, echo, args, message):
    files = {
        "dir": tmp_path / "adir",
        "txt": write_file(tmp_path / "task.txt", "x"),
        "syntax": write_file(tmp_path / "syn.py", "import os\n\ndef broken(:\n    pass\n"),
        "badimport": write_file(tmp_path / "imp.py", "import no_such_module_xyz\n"),
        "notask": write_file(tmp_path / "plain.py", "class Plain:\n    pass\n"),
        "badyaml": write_file(tmp_path / "bad.yaml", "a: 1\nb: c: d\n"),
        "badsection": write_file(tmp_path / "sec.yaml", "mixn: {n: 1}\n"),
        "echo": echo,
    }
    files["dir"].mkdir()
    args = [a.format(**files) for a in args]
    message = message.format(**files)
    work = tmp_path / "work"
    work.mkdir()
    if "--backbone" not in args:
        args += ["--backbone", "serial"]
    proc = dispatch_here(*args, cwd=work)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("dispatch: error:")]
    assert error_lines, proc.stderr
    assert list(work.iterdir()) == []  # no logs, no outputs
    assert not (work / "o").exists()


def test_all_configuration_errors_are_reported_together(echo, tmp_path):
    proc = dispatch_here(
        echo,
        "Echo",
        "--backbone",
        "serial",
        "--mixin",
        "n=x",
        "mode=zzz",
        "nested.deep.valeu=1",
        "--levle",
        "3",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dispatch: error:")]
    assert len(errors) == 5, proc.stderr  # unfilled output, n, mode, unknown key, unknown option


def test_debug_shows_traceback(echo, tmp_path):
    proc = dispatch_here(echo, "Nope", "--debug", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr


def test_failed_item_exit_1_and_failure_recorded(tmp_path):
    task = task_file("cli_tasks")
    proc = dispatch_here(
        task, "Flaky", "--backbone", "serial", "--log-dir", tmp_path / "logs", cwd=tmp_path
    )
    assert proc.returncode == 1
    assert "1 failed" in proc.stderr
    assert "ValueError: item two is bad" in proc.stderr  # the reason, not only the file
    failures = list((tmp_path / "logs").rglob("failures.jsonl"))
    assert len(failures) == 1
    rows = [json.loads(line) for line in failures[0].read_text().splitlines()]
    assert [r["item"] for r in rows] == [{"i": 2}]
    assert "item two is bad" in rows[0]["error"] and "Traceback" in rows[0]["traceback"]
    record = json.loads(next((tmp_path / "logs").rglob("run.json")).read_text())
    assert record["counts"]["failed"] == 1 and record["exit_code"] == 1


def test_dispatch_console_script_is_installed():
    proc = subprocess.run(["dispatch", "-hk"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--mixin-cfg" in proc.stdout


def test_python_m_dispatcher_from_repo_root():
    proc = subprocess.run(
        [sys.executable, "-m", "dispatcher", "-hk"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0


def test_sigterm_during_configuration_exits_143_writing_nothing(tmp_path):
    import signal
    import time

    task = task_file("cli_slow_import")
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", str(task), "Slow", "--backbone", "serial"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 143, err
    assert list(work.iterdir()) == []


def test_a_log_directory_inside_the_output_root_is_refused(tmp_path):
    task = task_file("cli_tasks")
    write_file(tmp_path / "in" / "a.txt", "a")
    out = tmp_path / "out"
    out.mkdir()
    proc = dispatch_here(
        task,
        "Copy",
        "--backbone",
        "serial",
        "--mixin",
        f"input={tmp_path / 'in'}",
        "output=.",
        cwd=out,
    )
    assert proc.returncode == 2
    assert "is inside the output root" in proc.stderr
    assert list(out.iterdir()) == []
    proc = dispatch_here(
        task,
        "Copy",
        "--backbone",
        "serial",
        "--mixin",
        f"input={tmp_path / 'in'}",
        "output=.",
        "--log-dir",
        tmp_path / "logs",
        cwd=out,
    )
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in out.iterdir() if not is_provenance_name(p.name)] == ["a.txt.out"]


def test_mixin_keys_for_a_task_that_declares_none_are_errors(tmp_path):
    task = task_file("cli_tasks")
    proc = dispatch_here(
        task, "Bare", "--backbone", "serial", "--mixin", "a.b=1", "c=2", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "unknown mixin key 'a.b' (this task declares no mixin)" in proc.stderr
    assert "unknown mixin key 'c' (this task declares no mixin)" in proc.stderr


def test_help_piped_into_a_closed_reader_prints_no_traceback(echo):
    proc = subprocess.run(
        f"{sys.executable} -m dispatcher {echo} Echo -h | head -1",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert proc.stdout.startswith("usage: dispatch")
    assert "Traceback" not in proc.stderr
