"""ModelArts mode 1 over row ranges (`--rows-per-item`): the operator is called once per
range, the file's output is joined from the ranges' parts and is the file an unsplit run
writes; a kill resumes at the unfinished ranges; shards keep a file's ranges together;
a changed N, an unsplittable or a mode-2 package is refused before any work."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import dispatch_here, run_dispatch, run_task, start_dispatch, tree, write_file

import dispatcher
from dispatcher.errors import UsageError
from templates.joined_ranges import RangeItems
from templates.row_ranges import cut, read_lines

COUNTING = """
import os
import time


class Process:
    def __init__(self, args):
        self.calls, self.pause = args["calls"], args["pause"]

    def __call__(self, df):
        time.sleep(self.pause)
        first = str(df["id"].iloc[0]) if len(df) else "-"
        fd = os.open(self.calls, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, (first + "\\n").encode())
        os.close(fd)
        return df.assign(text=df["text"].str.upper())
"""


def _package(root: Path, splittable: bool = True) -> Path:
    package = root / "counting"
    spec = "auto-data-loading: true\n"
    if not splittable:
        spec += "split-rows: false\n"
    spec += (
        "arguments:\n  - {name: calls, type: str}\n  - {name: pause, type: float, default: 0.0}\n"
    )
    write_file(package / "operator.yaml", spec)
    write_file(package / "program_package" / "process.py", COUNTING)
    return package


def _data(root: Path, rows: int = 3000) -> Path:
    rng = random.Random(7)
    (root / "sub").mkdir(parents=True)
    with open(root / "big.jsonl", "w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"id": i, "text": "t" * rng.randint(1, 60)}) + "\n")
    (root / "sub" / "small.jsonl").write_text('{"id": 5000, "text": "tiny"}\n')
    lines = ["id,text\n"] + [f'{i},"csv, row {i}"\n' for i in range(10000, 10000 + rows)]
    (root / "t.csv").write_text("".join(lines))
    import pandas as pd

    frame = pd.DataFrame({"id": range(20000, 20000 + rows), "text": [f"p{i}" for i in range(rows)]})
    frame.to_parquet(root / "p.parquet", row_group_size=250, index=False)
    return root


def _mixin(src: Path, out: Path, calls: Path, pause: float = 0.0) -> list[str]:
    return ["--mixin", f"input={src}", f"output={out}", f"calls={calls}", f"pause={pause}"]


def _calls(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _same_outputs(whole: Path, ranged: Path) -> None:
    import pandas as pd

    a, b = tree(whole), tree(ranged)
    assert sorted(a) == sorted(b)
    for name in a:
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(whole / name), pd.read_parquet(ranged / name)
            )
        else:
            assert a[name] == b[name], name


@pytest.mark.parametrize("backbone", ["serial", "mp"])
def test_ranges_make_the_outputs_an_unsplit_run_makes(tmp_path, backbone):
    package, src = _package(tmp_path), _data(tmp_path / "in")
    calls = tmp_path / "calls"
    whole = run_dispatch(package, "--backbone", backbone, "--log-dir", tmp_path / "logs",
                         *_mixin(src, tmp_path / "whole", tmp_path / "calls-whole"))  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    ranged = run_dispatch(package, "--backbone", backbone, "--rows-per-item", "400",
                          "--log-dir", tmp_path / "logs", *_mixin(src, tmp_path / "out", calls))  # fmt: skip
    assert ranged.returncode == 0, ranged.stderr
    _same_outputs(tmp_path / "whole", tmp_path / "out")
    # one call per range: the small file is one item, the others about 3000 / 400 ranges
    expected = 1 + sum(
        len(cut(str(src / n), n, 400).ranges) for n in ("big.jsonl", "t.csv", "p.parquet")
    )
    assert len(_calls(calls)) == expected and expected > 20
    assert not [p for p in (tmp_path / "out").rglob(".*") if "dispatch-rows" in p.name]
    again = run_dispatch(package, "--backbone", backbone, "--rows-per-item", "400",
                         "--log-dir", tmp_path / "logs", *_mixin(src, tmp_path / "out", calls))  # fmt: skip
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert len(_calls(calls)) == expected


def _first_ids(path: Path, per_item: int) -> dict[str, int]:
    """The id of each range's first row -> the range's index."""
    firsts = {}
    for part in cut(str(path), path.name, per_item).ranges:
        first = next(read_lines(str(path), part))
        firsts[str(json.loads(first)["id"])] = part.index
    return firsts


def _made_parts(out: Path) -> set[int]:
    folders = [p for p in out.glob(".big.jsonl.dispatch-rows-*") if p.is_dir()]
    return {
        int(p.name.split("-of-")[0])
        for f in folders
        for p in f.iterdir()
        if not p.name.startswith(".")
    }


@pytest.mark.slow
def test_a_kill_at_random_points_resumes_at_the_unfinished_ranges(tmp_path):
    package, src = _package(tmp_path), tmp_path / "in"
    src.mkdir()
    with open(src / "big.jsonl", "w") as fh:
        for i in range(200_000):
            fh.write(json.dumps({"id": i, "text": f"row {i}"}) + "\n")
    whole = run_dispatch(package, "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         *_mixin(src, tmp_path / "whole", tmp_path / "calls-whole"))  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    firsts = _first_ids(src / "big.jsonl", 10_000)
    assert len(firsts) >= 15
    rng = random.Random(int(os.environ.get("DISPATCH_TEST_SEED", "23")))
    outcomes = []
    for attempt in range(3):
        out, calls = tmp_path / f"out{attempt}", tmp_path / f"calls{attempt}"
        args = [package, "--backbone", "mp", "--rows-per-item", "10000",
                "--log-dir", tmp_path / "logs", *_mixin(src, out, calls, pause=0.3)]  # fmt: skip
        job = start_dispatch(*args, start_new_session=True)
        deadline = time.monotonic() + 60  # however loaded the machine: once a part is made
        while not _made_parts(out) and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 2.0))
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        made = _made_parts(out)
        joined = (out / "big.jsonl").exists()
        before = len(_calls(calls))
        rerun = run_dispatch(*args)
        assert rerun.returncode == 0, rerun.stderr
        ran = {firsts[c] for c in _calls(calls)[before:]}
        if joined:
            assert ran == set()
        else:
            assert ran == set(range(len(firsts))) - made, (sorted(made), sorted(ran))
            assert len(_calls(calls)[before:]) == len(firsts) - len(made)  # each once
        assert (out / "big.jsonl").read_bytes() == (tmp_path / "whole" / "big.jsonl").read_bytes()
        assert not [
            p for p in out.glob(".*") if "dispatch-rows" in p.name or "dispatch-part" in p.name
        ]
        outcomes.append((len(made), joined))
    # the kills fell between ranges, not only before the first or after the last
    assert any(0 < made < len(firsts) for made, _ in outcomes), outcomes


def _plan_keys(package: Path, mixin: dict, **kwargs) -> list[str]:
    result = dispatcher.run(str(package), mixin, plan_only=True, **kwargs)
    return result.plan.keys


@pytest.mark.parametrize("mode", ["hash", "index"])
def test_shards_over_ranges_are_disjoint_complete_and_keep_a_files_ranges(tmp_path, mode):
    package, src = _package(tmp_path), _data(tmp_path / "in", rows=2000)
    for i in range(6):
        (src / f"more{i}.jsonl").write_text(
            "".join(json.dumps({"id": j, "text": "x" * 30}) + "\n" for j in range(700))
        )
    mixin = {"input": str(src), "output": str(tmp_path / "out"), "calls": str(tmp_path / "c")}
    every = _plan_keys(package, mixin, rows_per_item=100, log_dir=tmp_path / "logs")
    shards = [
        _plan_keys(
            package,
            mixin,
            rows_per_item=100,
            shard=f"{i}/3",
            shard_mode=mode,
            log_dir=tmp_path / "logs",
        )
        for i in range(3)
    ]
    assert sorted(k for s in shards for k in s) == sorted(every)
    assert len(every) == len(set(every)) > 60
    owner = {}
    for i, keys in enumerate(shards):
        for key in keys:
            file = key.split("@")[0]
            assert owner.setdefault(file, i) == i, key
    assert len(set(owner.values())) > 1


def _leave_parts(monkeypatch, package, src, out, calls, per_item, logs):
    """A run whose every range is made but whose file is never joined (a kill between the
    last part and the join)."""
    with monkeypatch.context() as patched:
        patched.setattr(RangeItems, "join", lambda *args, **kwargs: False)
        result = run_task(str(package), None, {"input": str(src), "output": str(out), "calls": str(calls)},
                          log_dir=logs, backbone="serial", rows_per_item=per_item)  # fmt: skip
    assert result.exit_code == 0
    assert not (out / "big.jsonl").exists() and list(out.glob(".big.jsonl.dispatch-rows-*"))


def test_parts_made_in_full_are_joined_before_the_first_item(tmp_path, monkeypatch):
    package, src = _package(tmp_path), _data(tmp_path / "in", rows=1500)
    out, calls = tmp_path / "out", tmp_path / "calls"
    _leave_parts(monkeypatch, package, src, out, calls, 300, tmp_path / "logs")
    before = len(_calls(calls))
    again = run_dispatch(package, "--backbone", "serial", "--rows-per-item", "300",
                         "--log-dir", tmp_path / "logs", *_mixin(src, out, calls))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "joined the parts of" in again.stderr
    assert len(_calls(calls)) == before  # nothing computed again
    whole = run_dispatch(package, "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         *_mixin(src, tmp_path / "whole", tmp_path / "c2"))  # fmt: skip
    assert whole.returncode == 0
    _same_outputs(tmp_path / "whole", out)
    assert not [p for p in out.rglob(".*") if "dispatch-rows" in p.name]


def test_a_changed_rows_per_item_over_made_parts_is_refused(tmp_path, monkeypatch):
    package, src = _package(tmp_path), _data(tmp_path / "in", rows=1500)
    out, calls = tmp_path / "out", tmp_path / "calls"
    _leave_parts(monkeypatch, package, src, out, calls, 300, tmp_path / "logs")
    before = len(_calls(calls))
    other = dispatch_here(package, "--backbone", "serial", "--rows-per-item", "200",
                          "--log-dir", tmp_path / "logs", *_mixin(src, out, calls))  # fmt: skip
    assert other.returncode == 2
    assert "--rows-per-item 200 is not the N" in other.stderr
    assert "big.jsonl (made with --rows-per-item 300)" in other.stderr and "--force" in other.stderr
    assert len(_calls(calls)) == before and not (out / "big.jsonl").exists()
    forced = dispatch_here(package, "--backbone", "serial", "--rows-per-item", "200", "--force",
                           "--log-dir", tmp_path / "logs", *_mixin(src, out, calls))  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert run_dispatch(package, "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         *_mixin(src, tmp_path / "whole", tmp_path / "c2")).returncode == 0  # fmt: skip
    _same_outputs(tmp_path / "whole", out)
    assert not [p for p in out.rglob(".*") if "dispatch-rows" in p.name]


def test_an_unsplittable_or_mode_2_package_or_a_plain_task_is_refused(tmp_path):
    src = _data(tmp_path / "in", rows=100)
    package = _package(tmp_path / "a", splittable=False)
    refused = dispatch_here(
        package, "--rows-per-item", "10", *_mixin(src, tmp_path / "o", tmp_path / "c")
    )
    assert refused.returncode == 2 and "split-rows: false" in refused.stderr
    mode2 = tmp_path / "m2"
    write_file(mode2 / "operator.yaml", "auto-data-loading: false\n")
    write_file(
        mode2 / "program_package" / "process.py",
        "class Process:\n    def __init__(self, args): pass\n    def __call__(self, df): return df\n",
    )
    refused = dispatch_here(
        mode2, "--rows-per-item", "10", "--mixin", f"input={src}", f"output={tmp_path / 'o2'}"
    )
    assert refused.returncode == 2 and "mode-2 package" in refused.stderr
    for bad in ("0", "ten", "-3"):
        wrong = dispatch_here(
            package, f"--rows-per-item={bad}", *_mixin(src, tmp_path / "o", tmp_path / "c")
        )
        assert wrong.returncode == 2 and "--rows-per-item expects a number of rows" in wrong.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()
    with pytest.raises(UsageError, match="rows_per_item: expected a number of rows"):
        dispatcher.run(str(package), {}, rows_per_item=0)


def test_rows_per_item_is_printed_and_replayed_by_cfg(tmp_path):
    package, src = _package(tmp_path), _data(tmp_path / "in", rows=1200)
    printed = dispatch_here(
        package,
        "--rows-per-item",
        "300",
        "--print-config",
        *_mixin(src, tmp_path / "out", tmp_path / "c"),
    )
    assert printed.returncode == 0 and "rows_per_item: 300" in printed.stdout
    cfg = write_file(tmp_path / "run.yaml", printed.stdout)
    replay = dispatch_here("--cfg", cfg, "--backbone", "serial", "--log-dir", tmp_path / "logs")
    assert replay.returncode == 0, replay.stderr
    assert len(_calls(tmp_path / "c")) > 10
    bad = write_file(
        tmp_path / "bad.yaml", printed.stdout.replace("rows_per_item: 300", "rows_per_item: lots")
    )
    wrong = dispatch_here("--cfg", bad)
    assert wrong.returncode == 2 and "rows_per_item: expected a number of rows" in wrong.stderr


def test_leftovers_of_killed_part_attempts_are_removed(tmp_path, monkeypatch):
    package, src = _package(tmp_path), _data(tmp_path / "in", rows=1500)
    out, calls = tmp_path / "out", tmp_path / "calls"
    _leave_parts(monkeypatch, package, src, out, calls, 300, tmp_path / "logs")
    folder = next(out.glob(".big.jsonl.dispatch-rows-*"))
    part = next(p for p in sorted(folder.iterdir()))
    part.unlink()  # that range was never committed...
    stale = folder / f".{part.stem}.dispatch-part-99999999-dead0.jsonl"
    stale.write_text("half a part")  # ...and a killed attempt left its staging file
    again = run_dispatch(package, "--backbone", "serial", "--rows-per-item", "300",
                         "--log-dir", tmp_path / "logs", *_mixin(src, out, calls))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (out / "big.jsonl").exists() and not folder.exists()


@pytest.mark.slow
def test_two_devices_share_a_files_ranges_and_one_joins_it(tmp_path):
    package, src = _package(tmp_path), _data(tmp_path / "in", rows=2400)
    calls = tmp_path / "calls"
    whole = run_dispatch(package, "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         *_mixin(src, tmp_path / "whole", tmp_path / "c0"))  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    ranged = run_dispatch(package, "--backbone", "torch", "--devices", "cpu,cpu", "--num-workers", "0",
                          "--rows-per-item", "200", "--log-dir", tmp_path / "logs",
                          *_mixin(src, tmp_path / "out", calls, pause=0.02), timeout=300)  # fmt: skip
    assert ranged.returncode == 0, ranged.stderr
    _same_outputs(tmp_path / "whole", tmp_path / "out")
    for device in ("cpu#0", "cpu#1"):  # both made ranges of the files
        made = re.search(rf"{device}: (\d+) items \(0 failed\)", ranged.stderr)
        assert made is not None and int(made[1]) > 0, ranged.stderr
    assert len(_calls(calls)) == len(set(_calls(calls)))  # every range once


def test_a_malformed_row_in_a_later_range_names_its_line_in_the_file(tmp_path):
    package, src = _package(tmp_path), tmp_path / "in"
    src.mkdir()
    lines = [json.dumps({"id": i, "text": f"row {i}"}) for i in range(3000)]
    lines[2345] = '{"id": 2345, "text": '
    (src / "a.jsonl").write_text("\n".join(lines) + "\n")
    proc = run_dispatch(package, "--backbone", "serial", "--rows-per-item", "200",
                        "--log-dir", tmp_path / "logs", *_mixin(src, tmp_path / "out", tmp_path / "c"))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"{src / 'a.jsonl'}:2346: not a JSON row" in proc.stderr
    assert not (tmp_path / "out" / "a.jsonl").exists()
