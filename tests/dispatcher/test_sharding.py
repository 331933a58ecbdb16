"""Shards are a pure function of (key or sorted index, spec): disjoint, covering, stable.

Property tests over arbitrary key sets and shard counts, real directory trees created in
different orders, and `--shard auto` under SLURM array and torchrun variables.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import xxhash
from conftest import dispatch_here, run_task, task_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.environment import detect_shard
from dispatcher.errors import UsageError
from dispatcher.plan import make_plan, sorted_unique
from dispatcher.sharding import (
    HashShard,
    IndexShard,
    describe,
    hash_bucket,
    parse_cli_shard,
    select,
)
from dispatcher.stage import stage_for
from dispatcher.task import Task

KEYS = st.lists(st.text(min_size=1, max_size=12), max_size=60, unique=True).map(sorted)
COUNTS = st.integers(min_value=1, max_value=9)


def apply_shards(keys: list[str], specs) -> list[int]:
    """Positions of `keys` that the plan's shard selection keeps."""
    return select(list(range(len(keys))), keys, specs)


def partitions(keys: list[str], make) -> list[list[str]]:
    count = make.count
    return [[keys[p] for p in apply_shards(keys, [make(i)])] for i in range(count)]


def assert_partition(keys: list[str], parts: list[list[str]]) -> None:
    flat = [k for part in parts for k in part]
    assert len(flat) == len(set(flat)), "shards overlap"
    assert set(flat) == set(keys), "shards do not cover every item"
    for part in parts:  # each shard keeps the canonical order
        assert part == sorted(part)


@given(KEYS, COUNTS)
def test_index_shards_are_disjoint_and_cover(keys, count):
    parts = [[keys[p] for p in apply_shards(keys, [IndexShard(i, count)])] for i in range(count)]
    assert_partition(keys, parts)
    sizes = [len(p) for p in parts]
    assert max(sizes, default=0) - min(sizes, default=0) <= 1  # balanced


@given(KEYS, COUNTS)
def test_hash_shards_are_disjoint_and_cover(keys, count):
    parts = [[keys[p] for p in apply_shards(keys, [HashShard(i, count)])] for i in range(count)]
    assert_partition(keys, parts)
    for i, part in enumerate(parts):
        for key in part:
            expected = xxhash.xxh64_intdigest(key.encode("utf-8", "surrogateescape")) % count
            assert expected == i == hash_bucket(key, count)


@given(KEYS, COUNTS, st.data())
def test_index_list_is_the_union_of_its_indices(keys, count, data):
    chosen = data.draw(st.lists(st.integers(0, count - 1), min_size=1, unique=True))
    union = sorted(p for i in chosen for p in apply_shards(keys, [IndexShard(i, count)]))
    assert apply_shards(keys, [IndexShard(chosen, count)]) == union


@given(KEYS, COUNTS, COUNTS, st.booleans(), st.booleans())
def test_nested_sub_shards_partition_their_parent(keys, outer, inner, outer_hash, inner_hash):
    def spec(use_hash: bool, i: int, n: int):
        return HashShard(i, n) if use_hash else IndexShard(i, n)

    everything = []
    for i in range(outer):
        parent = [keys[p] for p in apply_shards(keys, [spec(outer_hash, i, outer)])]
        children = [
            [
                keys[p]
                for p in apply_shards(
                    keys, [spec(outer_hash, i, outer), spec(inner_hash, j, inner)]
                )
            ]
            for j in range(inner)
        ]
        assert_partition(parent, children)
        if not inner_hash:  # an index sub-shard re-indexes inside its parent
            assert children == [parent[j::inner] for j in range(inner)]
        everything.append(parent)
    assert_partition(keys, everything)


@given(KEYS, st.lists(st.one_of(
    st.builds(IndexShard, st.integers(0, 2), st.just(3)),
    st.builds(HashShard, st.integers(0, 1), st.just(2)),
    st.builds(IndexShard, st.just([0, 1]), st.just(2)),
), max_size=3))  # fmt: skip
def test_select_agrees_with_positions(keys, specs):
    items = [(k, None) for k in keys]
    chosen = select(items, keys, specs)
    assert [k for k, _ in chosen] == [keys[p] for p in apply_shards(keys, specs)]


@given(KEYS, COUNTS, st.lists(st.text(min_size=1, max_size=12), max_size=20))
def test_hash_membership_ignores_other_items(keys, count, others):
    grown = sorted(set(keys) | set(others))
    for i in range(count):
        before = {keys[p] for p in apply_shards(keys, [HashShard(i, count)])}
        after = {grown[p] for p in apply_shards(grown, [HashShard(i, count)])}
        assert before == after & set(keys)


class Listed(Task):
    """A plain task over a given list of keys (in any order, with repeats)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names

    def generate_tasks(self):
        return ({"name": n} for n in self.names)

    def item_key(self, item):
        return item["name"]


@given(st.lists(st.text(min_size=1, max_size=8), max_size=40), st.randoms(), COUNTS)
def test_plan_is_independent_of_enumeration_order(names, rnd, count):
    shuffled = list(names)
    rnd.shuffle(shuffled)
    for spec in [IndexShard(0, count), HashShard(count - 1, count)]:
        a = make_plan(stage_for(Listed(names)), [spec])
        b = make_plan(stage_for(Listed(shuffled)), [spec])
        assert [k for k, _ in a.pending] == [k for k, _ in b.pending]
        assert a.found == len(set(names)) and a.duplicates == len(names) - len(set(names))


@given(st.lists(st.tuples(st.text(min_size=1, max_size=6), st.integers()), max_size=40))
def test_sorted_unique_keeps_the_first_of_each_key(pairs):
    items, keys, repeated = sorted_unique(list(pairs))
    dropped = len(repeated)
    first: dict[str, int] = {}
    for key, value in pairs:
        first.setdefault(key, value)
    assert items == sorted(first.items()) and keys == sorted(first)
    assert dropped == len(pairs) - len(first)


# --- real trees created in different orders ------------------------------------------------

COPY = task_file("plan_copy")
"""A template task copying each .txt file (class Copy)."""

SEGMENT = st.text(st.sampled_from("ab0_-.Z"), min_size=1, max_size=3).filter(
    lambda s: s not in (".", "..") and not s.startswith(".")
)
TREES = st.lists(st.lists(SEGMENT, min_size=1, max_size=3), min_size=1, max_size=25)


def build_tree(root: Path, paths: list[str], rnd: random.Random) -> None:
    order = list(paths)
    rnd.shuffle(order)
    for rel in order:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)


def plan_keys(task_path: Path, src: Path, shard: str, mode: str) -> list[str]:
    import dispatcher

    result = dispatcher.run(
        (str(task_path), "Copy"), {"input": str(src), "output": f"{src}.out"},
        backbone="serial", shard=shard, shard_mode=mode, plan_only=True,
    )  # fmt: skip
    return result.plan.keys


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES, st.randoms(use_true_random=False), st.integers(2, 4))
def test_two_copies_created_in_different_orders_shard_identically(tree, rnd, count):
    # File names must not clash with folder names of the same tree.
    paths = sorted({"/".join(parts) + ".txt" for parts in tree})
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        task_path = COPY
        build_tree(base / "one", paths, rnd)
        build_tree(base / "two", list(reversed(paths)), rnd)
        for mode in ("index", "hash"):
            one = [plan_keys(task_path, base / "one", f"{i}/{count}", mode) for i in range(count)]
            two = [plan_keys(task_path, base / "two", f"{i}/{count}", mode) for i in range(count)]
            assert one == two
            assert_partition(paths, one)


def test_the_fifteen_file_tree_that_kagurazaka_splits_wrongly(tmp_path):
    """Two copies of a 15-file tree, created in opposite orders: each shard run on one copy,
    merged outputs equal one unsharded run, nothing missed, nothing twice."""
    names = [f"{d}/{f}.txt" for d in ("b", "a", "c/x") for f in ("q", "w", "e", "r", "t")]
    task_path = COPY
    build_tree(tmp_path / "one", names, random.Random(1))
    build_tree(tmp_path / "two", list(reversed(names)), random.Random(2))
    for mode in ("index", "hash"):
        outputs: dict[str, int] = {}
        for i, copy in enumerate(["one", "two"]):
            out = tmp_path / f"out-{mode}-{i}"
            done = run_task(
                task_path, "Copy", {"input": str(tmp_path / copy), "output": str(out)},
                log_dir=tmp_path / "logs", backbone="serial", shard=f"{i}/2", shard_mode=mode,
            )  # fmt: skip
            assert done.exit_code == 0, done.outcomes
            for path in out.rglob("*.out"):
                rel = path.relative_to(out).as_posix()
                outputs[rel] = outputs.get(rel, 0) + 1
        assert outputs == {f"{n}.out": 1 for n in names}


def test_shard_membership_does_not_depend_on_the_hash_seed(tmp_path):
    code = textwrap.dedent(
        """
        from dispatcher.sharding import HashShard, select
        keys = sorted(f"item-{i}/x.txt" for i in range(200))
        print([select(keys, keys, [HashShard(i, 5)]) for i in range(5)])
        """
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert len(outputs) == 1


# --- --shard I/N, --shard auto, and bad values --------------------------------------------


def slurm(task_id: int, count: int, first: int = 0, step: int | None = None, **extra: str):
    env = {
        "SLURM_ARRAY_TASK_ID": str(task_id),
        "SLURM_ARRAY_TASK_COUNT": str(count),
        "SLURM_ARRAY_TASK_MIN": str(first),
        **extra,
    }
    if step is not None:
        env["SLURM_ARRAY_TASK_STEP"] = str(step)
        env["SLURM_ARRAY_TASK_MAX"] = str(first + (count - 1) * step)
    return env


@pytest.mark.parametrize(
    "env, index, count",
    [
        ({}, 0, 1),
        (slurm(0, 4), 0, 4),
        (slurm(3, 4), 3, 4),
        (slurm(5, 4, first=5), 0, 4),  # --array=5-8
        (slurm(8, 4, first=5), 3, 4),
        (slurm(14, 3, first=10, step=2), 2, 3),  # --array=10-14:2
        ({"RANK": "2", "WORLD_SIZE": "3"}, 2, 3),
        ({**slurm(1, 2), "RANK": "0", "WORLD_SIZE": "8"}, 1, 2),  # SLURM wins
    ],
)
def test_auto_reads_slurm_array_and_torchrun(env, index, count):
    position = detect_shard(env)
    assert (position.index, position.count) == (index, count)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT is not set"),
        (slurm(4, 4), "out of range"),
        (slurm(2, 4, first=5), "out of range"),
        ({**slurm(1, 4), "SLURM_ARRAY_TASK_ID": "x"}, "not an integer"),
        ({**slurm(0, 3), "SLURM_ARRAY_TASK_MAX": "9"}, "evenly spaced"),
        ({"RANK": "3", "WORLD_SIZE": "3"}, "out of range"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "at least 1"),
        ({"RANK": "a", "WORLD_SIZE": "2"}, "not an integer"),
    ],
)
def test_auto_with_inconsistent_variables_is_a_usage_error(monkeypatch, env, message):
    for name in list(os.environ):
        if name.startswith("SLURM_ARRAY") or name in ("RANK", "WORLD_SIZE"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UsageError, match=message):
        parse_cli_shard("auto")


@pytest.mark.parametrize("text", ["4/4", "-1/4", "0/0", "1", "a/b", "1/2/3", "", "1/-2"])
def test_bad_cli_shards_exit_2_with_one_line(tmp_path, text):
    task_path = COPY
    (tmp_path / "in").mkdir()
    done = dispatch_here(
        task_path, "Copy", "--shard", text, "--log-dir", tmp_path / "logs",
        "--mixin", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("dispatch: error: ") and "--shard" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


def test_cli_shard_spec_and_description():
    assert parse_cli_shard("1/3") == HashShard(1, 3)
    assert parse_cli_shard("1/3", mode="index") == IndexShard(1, 3)
    assert parse_cli_shard(None) is None
    assert describe([IndexShard([0, 2], 4), HashShard(1, 3)]) == "index 0,2/4 > hash 1/3"
    assert describe([]) == "all"


@pytest.mark.parametrize(
    "env",
    [slurm(6, 3, first=5), {"RANK": "1", "WORLD_SIZE": "3"}],
    ids=["slurm-array-5-7", "torchrun"],
)
def test_auto_in_a_real_run_equals_the_explicit_shard(tmp_path, env):
    task_path = COPY
    for i in range(12):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"{i}.txt").write_text(str(i))
    results = []
    for shard, extra_env in (("auto", env), ("1/3", {})):
        out = tmp_path / f"out-{shard.replace('/', '-')}"
        done = dispatch_here(
            task_path, "Copy", "--backbone", "serial", "--shard", shard, "--log-dir", tmp_path / "logs",
            "--mixin", f"input={tmp_path / 'in'}", f"output={out}", env=extra_env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        results.append(sorted(p.name for p in out.iterdir()))
    assert results[0] == results[1] and results[0]
