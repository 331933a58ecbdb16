"""The manifest format: items written once in shard segments, one segment read back by a
seek; later items added as new segments without moving the earlier ones."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from conftest import run_dispatch, task_file, tree, write_file

from dispatcher.errors import UsageError
from dispatcher.manifest import add_segments, cut, read_manifest, read_segment, write_manifest


def _items(n: int, start: int = 0):
    for i in range(start, start + n):
        yield (f"k{i:05d}", None if i % 3 else {"i": i, "t": (i, "x")})


def test_segments_are_contiguous_runs_of_near_equal_size():
    assert cut(10, 3) == [(0, 4), (4, 3), (7, 3)]
    assert cut(2, 4) == [(0, 1), (1, 1), (2, 0), (2, 0)]
    for count, parts in [(0, 1), (1000, 7), (5, 5)]:
        runs = cut(count, parts)
        assert (
            sum(n for _, n in runs) == count
            and max(n for _, n in runs) - min(n for _, n in runs) <= 1
        )
        assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(runs))


def test_a_group_stays_in_one_segment():
    # Three files of 4, 4 and 2 row ranges: a cut inside a file moves to its end.
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    assert cut(10, 3, groups) == [(0, 4), (4, 4), (8, 2)]
    assert cut(10, 2, groups) == [(0, 8), (8, 2)]
    # One file larger than a segment: segments after it are empty until the next file.
    assert cut(10, 4, ["a"] * 9 + ["b"]) == [(0, 9), (9, 0), (9, 0), (9, 1)]
    for parts in range(1, 12):
        runs = cut(10, parts, groups)
        assert sum(n for _, n in runs) == 10 and len(runs) == parts
        assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(runs))
        for first, _ in runs:  # no group on both sides of a cut
            assert first in (0, 10) or groups[first] != groups[first - 1]


def test_a_written_manifest_reads_back_segment_by_segment(tmp_path):
    path = str(tmp_path / "run.manifest")
    made = write_manifest(path, _items(1000), 1000, 7, {"task": "T", "fingerprint": "f"})
    back = read_manifest(path)
    assert back.segments == made.segments and back.items == 1000
    assert back.header["task"] == "T" and back.header["version"] == 1 and back.header["made"]
    items = [item for i in range(7) for item in read_segment(back, i)]
    assert items == list(_items(1000))
    assert [len(read_segment(back, i)) for i in range(7)] == [143] * 6 + [142]


def test_reading_a_segment_reads_its_bytes_only(tmp_path, monkeypatch):
    path = str(tmp_path / "run.manifest")
    manifest = write_manifest(path, _items(10000), 10000, 100, {})
    size = os.path.getsize(path)
    read = []
    import builtins

    real_open = builtins.open

    def counting_open(*args, **kwargs):
        fh = real_open(*args, **kwargs)
        real_read = fh.read

        def read_and_count(n=-1):
            data = real_read(n)
            read.append(len(data))
            return data

        fh.read = read_and_count
        return fh

    monkeypatch.setattr(builtins, "open", counting_open)
    assert len(read_segment(manifest, 57)) == 100
    assert sum(read) < size / 50  # one segment of a hundred, not the file


def test_later_items_become_new_segments_and_earlier_ones_stay_put(tmp_path):
    path = str(tmp_path / "run.manifest")
    first = write_manifest(path, _items(100), 100, 4, {"task": "T"})
    before = [read_segment(first, i) for i in range(4)]
    grown = add_segments(read_manifest(path), _items(30, start=100), 30, 2)
    back = read_manifest(path)
    assert back.segments[:4] == first.segments and len(back.segments) == 6
    assert back.segments == grown.segments and back.items == 130
    assert [read_segment(back, i) for i in range(4)] == before
    assert read_segment(back, 4) + read_segment(back, 5) == list(_items(30, start=100))
    assert back.segments[4].first == 100
    assert back.counts == [4, 6] and len(back.replans) == 1 and first.counts == [4]
    assert back.counts_text() == "6 segments (made with 4, then 6 by --replan)"


def test_a_count_that_is_not_the_items_is_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "run.manifest"
    with pytest.raises(ValueError, match="fewer items"):
        write_manifest(str(path), _items(5), 6, 2, {})
    with pytest.raises(ValueError, match="more items"):
        write_manifest(str(path), _items(5), 4, 2, {})
    assert not path.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda data: b"not a manifest at all", "not a dispatch manifest"),
        (lambda data: data[:-3], "cut short (no index at its end)"),
        (lambda data: data[:30], "cut short"),
    ],
)
def test_a_damaged_manifest_is_a_clear_error(tmp_path, damage, message):
    path = tmp_path / "run.manifest"
    write_manifest(str(path), _items(50), 50, 2, {})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(str(path))


# --- runs over a manifest: one walk in total -----------------------------------------------

WALKED = task_file("manifest_walks")


def _data(root: Path, n: int = 40) -> Path:
    for i in range(n):
        write_file(root / f"d{i % 4}" / f"f{i:03d}.txt", "x" * i)
    return root


def _command(tmp_path: Path, *mixin: str) -> list[str]:
    return [str(WALKED), "Walked", "--backbone", "serial", "--log-dir", str(tmp_path / "logs"),
            "--mixin", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
            f"walks={tmp_path / 'walks'}", *mixin]  # fmt: skip


def _walks(tmp_path: Path) -> int:
    path = tmp_path / "walks"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_segment_runs_make_what_one_run_makes_and_never_walk(tmp_path):
    _data(tmp_path / "in")
    whole = run_dispatch(*_command(tmp_path), "--mixin", f"output={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr
    before = _walks(tmp_path)
    path = tmp_path / "run.manifest"
    made = run_dispatch("manifest", "--shards", "3", "--output", path, "--", *_command(tmp_path))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(path) and _walks(tmp_path) == before + 1
    assert "manifest: 40 items in 3 segments" in made.stderr
    for i in range(3):
        done = run_dispatch(*_command(tmp_path), "--manifest", path, "--shard", f"{i}/3")
        assert done.returncode == 0, done.stderr
        assert "found 40, in shard 14" in done.stderr or "in shard 13" in done.stderr
    assert _walks(tmp_path) == before + 1  # the segments were read, never walked
    assert tree(tmp_path / "out") == tree(tmp_path / "whole")
    # A rerun over the manifest (every segment) finds everything done, still without a walk.
    again = run_dispatch(*_command(tmp_path), "--manifest", path)
    assert again.returncode == 0 and "all done (40 found)" in again.stderr, again.stderr
    assert _walks(tmp_path) == before + 1


def test_a_manifest_for_another_configuration_or_count_is_refused_before_any_work(tmp_path):
    _data(tmp_path / "in", 8)
    path = tmp_path / "run.manifest"
    made = run_dispatch("manifest", "--shards", "2", "--output", path, "--", *_command(tmp_path))
    assert made.returncode == 0, made.stderr
    other = run_dispatch(*_command(tmp_path, "suffix=.txt2"), "--manifest", path, "--shard", "0/2")
    assert other.returncode == 2 and not (tmp_path / "out").exists()
    assert f"--manifest {path} was made for another configuration of the task" in other.stderr
    count = run_dispatch(*_command(tmp_path), "--manifest", path, "--shard", "0/3")
    assert count.returncode == 2, count.stderr
    assert f"--shard 0/3: --manifest {path} has 2 segments: give --shard I/2" in count.stderr
    gone = run_dispatch(*_command(tmp_path), "--manifest", tmp_path / "nope.manifest")
    assert gone.returncode == 2 and "nope.manifest: cannot be read" in gone.stderr
    assert not (tmp_path / "out").exists()
    inner = run_dispatch("manifest", "--shards", "2", "--", *_command(tmp_path), "--manifest", path)
    assert inner.returncode == 2 and "leave --manifest out" in inner.stderr


def test_python_runs_a_segment_of_a_manifest(tmp_path):
    import dispatcher

    _data(tmp_path / "in", 10)
    path = tmp_path / "run.manifest"
    made = run_dispatch("manifest", "--shards", "2", "--output", path, "--", *_command(tmp_path))
    assert made.returncode == 0, made.stderr
    mixin = {"input": str(tmp_path / "in"), "output": str(tmp_path / "out"),
             "walks": str(tmp_path / "walks")}  # fmt: skip
    result = dispatcher.run(f"{WALKED}:Walked", mixin, backbone="serial", manifest=path,
                            shard="1/2", log_dir=tmp_path / "logs")  # fmt: skip
    assert result.exit_code == 0 and result.counts.succeeded == 5
    assert _walks(tmp_path) == 1


def test_replan_adds_only_new_input_as_new_segments_and_old_shards_still_run(tmp_path):
    _data(tmp_path / "in", 30)
    path = tmp_path / "run.manifest"
    made = run_dispatch("manifest", "--shards", "3", "--output", path, "--", *_command(tmp_path))
    assert made.returncode == 0, made.stderr
    before = [read_segment(read_manifest(str(path)), i) for i in range(3)]
    for i in range(30, 45):  # input added since: no run over the manifest sees it
        write_file(tmp_path / "in" / "new" / f"g{i:03d}.txt", "y" * i)
    (tmp_path / "in" / "d0" / "f000.txt").unlink()
    run = run_dispatch(*_command(tmp_path), "--manifest", path)
    assert run.returncode == 0 and "found 30" in run.stderr, run.stderr
    assert not (tmp_path / "out" / "new").exists() and _walks(tmp_path) == 1
    grown = run_dispatch("manifest", "--replan", path, "--", *_command(tmp_path))
    assert grown.returncode == 0, grown.stderr
    assert _walks(tmp_path) == 2  # the replan's walk
    assert "replan: 15 new items since" in grown.stderr and "segments 3-4" in grown.stderr
    assert "1 items of the manifest are no longer found" in grown.stderr
    back = read_manifest(str(path))
    assert back.counts == [3, 5] and [len(read_segment(back, i)) for i in (3, 4)] == [8, 7]
    assert [read_segment(back, i) for i in range(3)] == before  # old segments kept
    # A shard counted before the replan still reads its own segment; the new ones run.
    old = run_dispatch(*_command(tmp_path), "--manifest", path, "--shard", "1/3")
    assert old.returncode == 0 and "10 items in this shard, all done" in old.stderr, old.stderr
    for i in (3, 4):
        new = run_dispatch(*_command(tmp_path), "--manifest", path, "--shard", f"{i}/5")
        assert new.returncode == 0, new.stderr
    assert len(list((tmp_path / "out" / "new").iterdir())) == 15 and _walks(tmp_path) == 2
    wrong = run_dispatch(*_command(tmp_path), "--manifest", path, "--shard", "0/4")
    assert wrong.returncode == 2
    assert "has 5 segments (made with 3, then 5 by --replan): give --shard I/5" in wrong.stderr
    # Nothing new: said, and the file is left as it was.
    data = path.read_bytes()
    same = run_dispatch("manifest", "--replan", path, "--", *_command(tmp_path))
    assert same.returncode == 0 and "replan: no new items since" in same.stderr, same.stderr
    assert path.read_bytes() == data
    drift = run_dispatch("manifest", "--replan", path, "--", *_command(tmp_path, "suffix=.x"))
    assert drift.returncode == 2 and "made for another configuration" in drift.stderr
    assert path.read_bytes() == data


def test_row_ranges_keep_their_file_in_one_segment_and_make_what_one_run_makes(tmp_path):
    import json

    data = tmp_path / "in"
    for f in range(4):
        rows = (json.dumps({"id": f * 1000 + i, "text": f"  row {i}  "}) for i in range(600))
        write_file(data / f"f{f}.jsonl", "\n".join(rows) + "\n")
    package = Path(__file__).parents[2] / "tasks" / "operators" / "text_clean"
    command = [str(package), "--rows-per-item", "100", "--log-dir", str(tmp_path / "logs"),
               "--mixin", f"input={data}"]  # fmt: skip
    whole = run_dispatch(*command, "--mixin", f"output={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr
    path = tmp_path / "rows.manifest"
    out = ["--mixin", f"output={tmp_path / 'out'}"]
    made = run_dispatch("manifest", "--shards", "3", "--output", path, "--", *command, *out)
    assert made.returncode == 0, made.stderr
    manifest = read_manifest(str(path))
    files = [{key.split("@")[0] for key, _ in read_segment(manifest, i)} for i in range(3)]
    assert [len(read_segment(manifest, i)) for i in range(3)] == [14, 7, 7]
    assert files[0].isdisjoint(files[1]) and files[1].isdisjoint(files[2])
    for i in range(3):
        done = run_dispatch(*command, *out, "--manifest", path, "--shard", f"{i}/3")
        assert done.returncode == 0, done.stderr
    assert tree(tmp_path / "out") == tree(tmp_path / "whole")


def test_over_a_manifest_the_shards_are_its_segments_whatever_the_mode(tmp_path):
    _data(tmp_path / "in", 9)
    path = tmp_path / "run.manifest"
    made = run_dispatch("manifest", "--shards", "3", "--output", path, "--", *_command(tmp_path))
    assert made.returncode == 0, made.stderr
    mode = ["--shard-mode", "index", "--manifest", path]
    done = run_dispatch(*_command(tmp_path), *mode, "--shard", "2/3")
    assert done.returncode == 0 and "in shard 3" in done.stderr, done.stderr
    keys = {key for key, _ in read_segment(read_manifest(str(path)), 2)}
    made_now = {
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.out")
    }
    assert made_now == {key + ".out" for key in keys}


def test_items_that_cannot_be_written_are_a_clear_error_and_nothing_is_left(tmp_path):
    task = write_file(
        tmp_path / "lambdas.py",
        """
        from dispatcher import Task

        class Lambdas(Task):
            def output_roots(self):
                return ["out"]

            def generate_tasks(self):
                for i in range(3):
                    yield {"name": f"i{i}", "make": lambda: i}

            def item_key(self, item):
                return item["name"]

            def process(self, name, make):
                pass
        """,
    )
    path = tmp_path / "run.manifest"
    made = run_dispatch("manifest", "--shards", "2", "--output", path, "--", task, "Lambdas",
                        "--log-dir", tmp_path / "logs", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 2, made.stderr
    assert "an item cannot be written to a manifest" in made.stderr
    assert "--no-manifest" in made.stderr and "Traceback" not in made.stderr
    assert not path.exists() and list(tmp_path.glob("run.manifest*")) == []


def test_a_replan_waits_for_another_and_then_finds_its_segments(tmp_path):
    import fcntl
    import subprocess
    import sys
    import time

    from conftest import REPO

    _data(tmp_path / "in", 6)
    path = tmp_path / "run.manifest"
    made = run_dispatch("manifest", "--shards", "2", "--output", path, "--", *_command(tmp_path))
    assert made.returncode == 0, made.stderr
    for i in range(6, 9):
        write_file(tmp_path / "in" / "new" / f"g{i:03d}.txt", "y")
    with open(f"{path}.lock", "a") as held:  # another replan of the file, under way
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "manifest", "--replan", str(path), "--",
             *map(str, _command(tmp_path))],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(3)
        assert waiting.poll() is None  # it waits for the lock
        grown = add_segments(read_manifest(str(path)), [(f"new/g{i:03d}.txt", None)
                             for i in range(6, 9)], 3, 1)  # fmt: skip
        fcntl.flock(held, fcntl.LOCK_UN)
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    # It read the file again under the lock: what the other one added is not new.
    assert "replan: no new items since" in err, err
    assert read_manifest(str(path)).counts == grown.counts == [2, 3]
