"""`dispatcher.run(...)`: the command line's run from Python, on real files and processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO, run_dispatch, tree

import dispatcher
from dispatcher import Placeholder, Task, UsageError, atomic_write

WORDCOUNT = REPO / "tasks" / "wordcount.py"
TEXT = REPO / "tasks" / "data" / "text"


class Squares(Task):
    """Writes OUTPUT/<n>.txt holding n*n and the pid that made it, for n in range(count)."""

    mixin = {
        "output": Placeholder(str),
        "count": Placeholder(int, default=4),
        "fail": Placeholder(list[int], default=[]),
        "stop_at": Placeholder(int, default=-1),
        "shape": {"scale": Placeholder(int, default=1)},
    }

    def output_roots(self):
        return [self.mixin.output]

    def generate_tasks(self):
        for n in range(self.mixin.count):
            yield {"n": n}

    def item_key(self, item):
        return f"{item['n']:03d}"

    def _path(self, n):
        return os.path.join(self.mixin.output, f"{n}.txt")

    def is_executed(self, n):
        return os.path.exists(self._path(n))

    def process(self, n):
        if n == self.mixin.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if n in self.mixin.fail:
            raise ValueError(f"bad {n}")
        os.makedirs(self.mixin.output, exist_ok=True)
        with atomic_write(self._path(n)) as tmp, open(tmp, "w") as fh:
            fh.write(f"{n * n * self.mixin.shape.scale} {os.getpid()}")


def squares(tmp_path: Path, **mixin) -> dict:
    return {"output": str(tmp_path / "out"), **mixin}


def logs(tmp_path: Path) -> str:
    return str(tmp_path / "logs")


def test_a_class_of_the_calling_module_runs_in_process_then_is_skipped(tmp_path):
    result = dispatcher.run(Squares, squares(tmp_path), backbone="serial", log_dir=logs(tmp_path))
    assert result.exit_code == 0 and result.ok
    c = result.counts
    assert (c.found, c.in_shard, c.skipped, c.to_run) == (4, 4, 0, 4)
    assert (c.ran, c.succeeded, c.failed, c.not_run, c.made_elsewhere) == (4, 4, 0, 0, 0)
    assert [o.key for o in result.outcomes] == ["000", "001", "002", "003"]
    assert all(o.ok and o.error is None for o in result.outcomes) and result.failed == []
    assert tree(tmp_path / "out") == {
        f"{n}.txt": f"{n * n} {os.getpid()}".encode() for n in range(4)
    }
    record = json.loads(Path(result.record_path).read_text())
    assert record["exit_code"] == 0 and record["counts"]["succeeded"] == 4
    assert Path(result.run_dir) == Path(result.record_path).parent
    assert record["config"]["task_class"] == "Squares"
    assert record["config"]["task_file"] == os.path.abspath(__file__)

    again = dispatcher.run(Squares, squares(tmp_path), backbone="serial", log_dir=logs(tmp_path))
    assert again.exit_code == 0 and again.counts.skipped == 4 and again.counts.ran == 0
    assert again.outcomes == [] and again.record_path is None and again.run_dir is None


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_class_of_the_calling_module_runs_in_mp_workers(tmp_path, start_method):
    # Workers rebuild the task by importing this module by name (spawn starts fresh).
    result = dispatcher.run(
        Squares,
        squares(tmp_path, count=6),
        backbone="mp",
        options={"num_process": 2, "--start-method": start_method},
        log_dir=logs(tmp_path),
    )
    assert result.exit_code == 0, result.failed
    assert result.counts.succeeded == 6
    assert sorted(o.key for o in result.outcomes) == [f"{n:03d}" for n in range(6)]
    pids = {int((tmp_path / "out" / f"{n}.txt").read_text().split()[1]) for n in range(6)}
    assert os.getpid() not in pids
    options = json.loads(Path(result.record_path).read_text())["config"]["backbone"]["options"]
    assert options["num_process"] == 2 and options["start_method"] == start_method


def test_a_class_workers_cannot_import_by_name_is_refused_before_any_work(tmp_path):
    class Local(Squares):
        pass

    with pytest.raises(UsageError) as caught:
        dispatcher.run(Local, squares(tmp_path), backbone="serial", log_dir=logs(tmp_path))
    assert caught.value.messages == [
        f"task class {__name__}.{Local.__qualname__} cannot be imported by that name, so "
        "worker processes cannot rebuild it: define it at the top level of an importable "
        "module, or pass 'path/to/file.py:ClassName'"
    ]
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()
    with pytest.raises(UsageError, match="is not a task class"):
        dispatcher.run(dict, {})


@pytest.mark.parametrize("form", ["string", "tuple"])
def test_a_task_named_by_file_and_class(tmp_path, form):
    task = f"{WORDCOUNT}:WordCount" if form == "string" else (str(WORDCOUNT), "WordCount")
    out = tmp_path / "counts"
    result = dispatcher.run(
        task,
        {"input": str(TEXT), "output": str(out), "top": 2},
        backbone="serial",
        options={"min_length": 4},
        log_dir=logs(tmp_path),
    )
    assert result.exit_code == 0
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert made == sorted(o.key + ".json" for o in result.outcomes) and made
    counts = json.loads(next(out.rglob("*.json")).read_text())
    assert all(len(word) >= 4 for word, _ in counts["top"]) and len(counts["top"]) <= 2
    with pytest.raises(UsageError, match=r"expected a Task subclass, 'path/to/file.py:ClassName'"):
        dispatcher.run(str(WORDCOUNT))


def test_mixin_errors_are_the_command_lines_all_at_once(tmp_path):
    mixin = {"input": str(TEXT), "output": str(tmp_path / "o"), "tpo": 3, "lowercase": "maybe"}
    with pytest.raises(UsageError) as caught:
        dispatcher.run((str(WORDCOUNT), "WordCount"), mixin, log_dir=logs(tmp_path))
    messages = caught.value.messages
    assert any("unknown mixin key 'tpo' (did you mean 'top'?)" in m for m in messages)
    assert len(messages) == 2, messages
    cli = run_dispatch(
        WORDCOUNT, "WordCount", "--log-dir", logs(tmp_path), "--mixin", f"input={TEXT}",
        f"output={tmp_path / 'o'}", "tpo=3", "lowercase=maybe",
    )  # fmt: skip
    assert cli.returncode == 2
    assert cli.stderr.splitlines() == [f"dispatch: error: {m}" for m in messages]
    assert not (tmp_path / "o").exists() and not (tmp_path / "logs").exists()


def test_mixin_values_keep_their_python_types_over_the_files_layers(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"mixin:\n  output: {tmp_path / 'from-cfg'}\n  count: 9\n")
    plan = dispatcher.run(Squares, {"count": 2}, cfg=str(cfg), plan_only=True).plan
    assert plan.keys == ["000", "001"]
    result = dispatcher.run(
        Squares,
        {"output": tmp_path / "o", "shape.scale": 3},  # a path object, a dotted key
        cfg=str(cfg),
        backbone="serial",
        log_dir=logs(tmp_path),
    )
    assert result.counts.succeeded == 9 and not (tmp_path / "from-cfg").exists()
    assert (tmp_path / "o" / "2.txt").read_text().startswith("12 ")
    with pytest.raises(UsageError, match="shape.scale"):
        dispatcher.run(Squares, {"output": str(tmp_path), "shape": {"scale": "big"}})


def test_an_item_failure_is_exit_1_with_its_error(tmp_path):
    result = dispatcher.run(
        Squares, squares(tmp_path, fail=[2]), backbone="serial", log_dir=logs(tmp_path)
    )
    assert result.exit_code == 1 and not result.ok
    assert [(o.key, o.ok, o.error) for o in result.failed] == [("002", False, "ValueError: bad 2")]
    assert "raise ValueError" in result.failed[0].traceback
    c = result.counts
    assert (c.ran, c.succeeded, c.failed) == (4, 3, 1)
    failures = Path(result.run_dir, "failures.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in failures] == ["002"]


def test_plan_only_runs_and_writes_nothing(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "1.txt").write_text("done")
    result = dispatcher.run(Squares, squares(tmp_path), plan_only=True, log_dir=logs(tmp_path))
    assert result.exit_code == 0 and result.outcomes == [] and result.record_path is None
    plan = result.plan
    assert (plan.found, plan.in_shard, plan.done, plan.to_run) == (4, 4, 1, 3)
    assert plan.keys == ["000", "002", "003"] and plan.shards == "all"
    assert (result.counts.skipped, result.counts.to_run, result.counts.ran) == (1, 3, 0)
    assert tree(tmp_path / "out") == {"1.txt": b"done"}
    assert not (tmp_path / "logs").exists()


def test_force_remakes_what_is_done(tmp_path):
    first = dispatcher.run(Squares, squares(tmp_path), backbone="serial", log_dir=logs(tmp_path))
    assert first.counts.succeeded == 4
    (tmp_path / "out" / "2.txt").write_text("stale")
    plan = dispatcher.run(Squares, squares(tmp_path), force=True, plan_only=True).plan
    assert plan.to_run == 4 and plan.force
    forced = dispatcher.run(
        Squares, squares(tmp_path), backbone="serial", force=True, log_dir=logs(tmp_path)
    )
    assert forced.exit_code == 0 and forced.counts.ran == 4 and forced.counts.skipped == 0
    assert (tmp_path / "out" / "2.txt").read_text().startswith("4 ")


@pytest.mark.parametrize("mode", ["hash", "index"])
def test_shards_run_apart_are_disjoint_and_make_everything(tmp_path, mode):
    ran: list[str] = []
    for i in range(3):
        result = dispatcher.run(
            Squares,
            squares(tmp_path, count=10),
            backbone="serial",
            shard=f"{i}/3",
            shard_mode=mode,
            log_dir=logs(tmp_path),
        )
        assert result.exit_code == 0
        assert result.counts.in_shard == result.counts.ran
        ran += [o.key for o in result.outcomes]
    assert sorted(ran) == [f"{n:03d}" for n in range(10)]  # disjoint: no key twice
    everything = dispatcher.run(Squares, squares(tmp_path, count=10), shard="all", plan_only=True)
    assert everything.plan.done == 10 and everything.plan.to_run == 0


def test_options_are_checked_like_the_command_line(tmp_path):
    with pytest.raises(UsageError) as caught:
        dispatcher.run(
            Squares,
            squares(tmp_path),
            backbone="mp",
            options={"num_proces": 2, "--retries": -1},
            log_dir=logs(tmp_path),
        )
    assert caught.value.messages == ["argument --retries: expected an integer 0 or more, got '-1'"]
    with pytest.raises(UsageError) as unknown:
        dispatcher.run(Squares, squares(tmp_path), backbone="mp", options={"num_proces": 2})
    assert unknown.value.messages == [
        "unrecognized option --num-proces (did you mean '--num-process'?) (see -h and -hb)"
    ]
    with pytest.raises(UsageError) as bad:
        dispatcher.run(Squares, squares(tmp_path), grace=-1, shard_mode="rows")
    assert bad.value.messages == [
        "grace: expected a number of seconds, 0 or more, got -1",
        "shard_mode: expected hash or index, got 'rows'",
    ]
    assert not (tmp_path / "out").exists()


def test_a_sigterm_in_the_main_thread_stops_the_run_with_143(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    result = dispatcher.run(
        Squares,
        squares(tmp_path, count=6, stop_at=1),
        backbone="serial",
        grace=30,
        log_dir=logs(tmp_path),
    )
    assert result.exit_code == 143
    assert result.counts.not_run == 4 and result.counts.succeeded == 2
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


@pytest.mark.parametrize("backbone", ["serial", "mp"])
def test_a_run_from_another_thread_works_without_handlers(tmp_path, backbone):
    results: list = []
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def run() -> None:
        try:
            results.append(
                dispatcher.run(
                    Squares,
                    squares(tmp_path),
                    backbone=backbone,
                    options={"num_process": 2} if backbone == "mp" else {},
                    log_dir=logs(tmp_path),
                )
            )
        except BaseException as exc:  # handed to the test's thread to fail it there
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    assert not thread.is_alive() and len(results) == 1
    assert not isinstance(results[0], BaseException), results[0]
    assert results[0].exit_code == 0 and results[0].counts.succeeded == 4
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_import_dispatcher_loads_neither_the_runner_nor_heavy_modules():
    code = (
        "import sys, dispatcher\n"
        "assert 'dispatcher.runner.execute' not in sys.modules\n"
        "from dispatcher import RunResult\n"
        "assert callable(dispatcher.run) and RunResult.__name__ == 'RunResult'\n"
        "heavy = {'torch', 'pandas', 'pyarrow', 'av'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_readme_python_example_runs(tmp_path):
    text = (REPO / "README.md").read_text()
    section = text.split("### From Python", 1)[1].split("\n#", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    for name in ("tasks",):
        os.symlink(REPO / name, tmp_path / name)
    proc = subprocess.run(
        [sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "out" / "wordcount-py").is_dir()
