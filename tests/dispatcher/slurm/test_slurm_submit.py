"""`dispatch submit`: the array and shard arithmetic, the script, checks before submitting,
and real array jobs on a running cluster (skipped without one, as in test_slurm.py)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, run_dispatch, task_file, tree

from dispatcher.sharding import hash_bucket
from dispatcher.slurm.submit import (
    Chunk,
    array_spec,
    read_max_array_size,
    render_script,
    split_shards,
)

# --- arithmetic ------------------------------------------------------------------------------


def test_shards_below_the_limit_keep_their_numbers_as_array_ids():
    assert split_shards(range(4), 1001) == [Chunk(0, (0, 1, 2, 3))]
    # An uneven resubmission list runs those very shards: ids not starting at 0, gaps.
    assert split_shards([12, 3, 7], 1001) == [Chunk(0, (3, 7, 12))]
    assert Chunk(0, (3, 7, 12)).shards == [3, 7, 12]


def test_shards_above_max_array_size_go_to_submissions_with_offsets():
    chunks = split_shards(range(20), 8)  # ids must stay in 0..7
    assert chunks == [Chunk(0, tuple(range(8))), Chunk(8, tuple(range(8))), Chunk(16, (0, 1, 2, 3))]
    assert [s for c in chunks for s in c.shards] == list(range(20))
    assert all(max(c.ids) < 8 for c in chunks)
    # A resubmission of scattered shards: each to the submission its index fits.
    assert split_shards([5, 9, 17, 18], 8) == [Chunk(0, (5,)), Chunk(8, (1,)), Chunk(16, (1, 2))]
    # The limit caps the index, not only the count: shard 8 alone does not fit id 8.
    assert split_shards([8], 8) == [Chunk(8, (0,))]
    with pytest.raises(ValueError):
        split_shards([0], 0)


def test_array_spec_ranges_lists_and_throttle():
    assert array_spec(range(8)) == "0-7"
    assert array_spec(range(8), parallel=3) == "0-7%3"
    assert array_spec([3, 7, 12]) == "3,7,12"
    assert array_spec([10, 1, 2, 3, 7, 9], parallel=2) == "1-3,7,9-10%2"
    assert array_spec([5]) == "5"


def test_max_array_size_is_read_from_scontrol_show_config():
    text = "Configuration data as of 2026-01-01T00:00:00\nMaxArraySize            = 8\nMaxJobCount = 10000\n"
    assert read_max_array_size(text) == 8
    assert read_max_array_size("KillWait = 30 sec\n") is None


# --- the script, run by bash as SLURM would start it -----------------------------------------


def stamp_command(tmp_path: Path, count: int = 12, delay: float = 0.0) -> list[str]:
    task = task_file("slurm_submit_stamp")
    return [
        str(task), "Stamp", "--backbone", "serial", "--log-dir", str(tmp_path / "logs"),
        "--mixin", f"output={tmp_path / 'out'}", f"journal={tmp_path / 'journal.jsonl'}",
        f"count={count}", f"delay={delay}",
    ]  # fmt: skip


def outputs(tmp_path: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")}


def journal(tmp_path: Path) -> list[dict]:
    path = tmp_path / "journal.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    return [json.loads(line) for line in lines]


def test_script_runs_its_explicit_shard_in_an_uneven_array(tmp_path):
    """Array task 7 of `--array=3,7,12` runs shard 7 of 20, where `--shard auto` refuses."""
    command = stamp_command(tmp_path, count=60)
    chunk = split_shards([3, 7, 12], 1001)[0]
    script = render_script(
        chunk, 20, command, log_dir=str(tmp_path / "logs"), cwd=str(tmp_path), job_name="t"
    )
    path = tmp_path / "job.sh"
    path.write_text(script)
    assert "#SBATCH --array=3,7,12\n" in script
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    # What SLURM sets for task 7 of 3,7,12: not evenly spaced, so (ID - MIN) / STEP is no shard.
    env.update(
        SLURM_ARRAY_JOB_ID="900", SLURM_JOB_ID="907", SLURM_ARRAY_TASK_ID="7",
        SLURM_ARRAY_TASK_MIN="3", SLURM_ARRAY_TASK_MAX="12", SLURM_ARRAY_TASK_COUNT="3",
        SLURM_ARRAY_TASK_STEP="1",
    )  # fmt: skip
    done = subprocess.run(
        ["bash", str(path)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    mine = {f"item-{i:03d}" for i in range(60) if hash_bucket(f"item-{i:03d}", 20) == 7}
    assert mine and set(outputs(tmp_path)) == mine
    assert {r["shard"] for r in journal(tmp_path)} == {"7"}
    # The run record is named by job and array task id, and says which shard it ran.
    runs = list((tmp_path / "logs" / "Stamp").iterdir())
    assert len(runs) == 1 and re.search(r"-hash7of20-900_7-\d+$", runs[0].name), runs
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["config"]["shard"] == "hash 7/20"
    assert record["slurm"] == {"job": "907", "array_job": "900", "array_task": "7"}


def test_script_offsets_shards_of_a_later_submission(tmp_path):
    """Array task 1 of the third submission at MaxArraySize 8 runs shard 17 of 20."""
    command = stamp_command(tmp_path, count=80)
    chunk = split_shards(range(20), 8)[2]
    path = tmp_path / "job.sh"
    path.write_text(
        render_script(
            chunk, 20, command, log_dir=str(tmp_path / "logs"), cwd=str(tmp_path), job_name="t"
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_ARRAY_JOB_ID="5", SLURM_JOB_ID="6", SLURM_ARRAY_TASK_ID="1")
    done = subprocess.run(
        ["bash", str(path)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    mine = {f"item-{i:03d}" for i in range(80) if hash_bucket(f"item-{i:03d}", 20) == 17}
    assert mine and set(outputs(tmp_path)) == mine


def test_a_replayed_config_is_submitted_from_where_it_is_typed_and_runs_where_printed(tmp_path):
    """A `--cfg` printed elsewhere, given by a relative path: the script starts where the
    command was typed (so the path still names the document) and the run works where the
    document was printed (so its relative roots name what they named)."""
    here, typed = tmp_path / "here", tmp_path / "typed"
    here.mkdir(), typed.mkdir()
    printed = run_dispatch(task_file("slurm_submit_stamp"), "Stamp", "--backbone", "serial",
                           "--print-config", "--mixin", "output=out", "journal=journal.jsonl",
                           "count=12", cwd=here)  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    (typed / "run.yaml").write_text(printed.stdout)
    done = run_dispatch("submit", "--array", "2", "--no-manifest", "--dry-run", "--", "--cfg", "run.yaml",
                        "--log-dir", "logs", cwd=typed)  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = done.stdout.split("\n", 1)[1]  # after the "# sbatch" line
    assert f"#SBATCH --chdir={typed}\n" in script
    assert f"#SBATCH --output={typed / 'logs' / 'slurm'}/%A_%a.out\n" in script
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_ARRAY_JOB_ID="5", SLURM_JOB_ID="6", SLURM_ARRAY_TASK_ID="1")
    (typed / "job.sh").write_text(script)
    ran = subprocess.run(["bash", "job.sh"], env=env, cwd=typed, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    mine = {f"item-{i:03d}" for i in range(12) if hash_bucket(f"item-{i:03d}", 2) == 1}
    assert {p.stem for p in (here / "out").glob("*.json")} == mine
    assert not (typed / "out").exists() and list((typed / "logs").rglob("run.json"))


# --- checks before anything is submitted -----------------------------------------------------


def test_dry_run_prints_the_script_and_writes_nothing(tmp_path):
    command = stamp_command(tmp_path)
    done = run_dispatch(
        "submit", "--array", "4", "--parallel", "2", "--time", "10", "--mem", "1G",
        "--sbatch-arg", "--qos=low", "--dry-run", "--", *command, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "#SBATCH --array=0-3%2\n" in out
    assert "#SBATCH --time=10\n#SBATCH --mem=1G\n#SBATCH --qos=low\n" in out
    assert f"#SBATCH --output={tmp_path / 'logs' / 'slurm'}/%A_%a.out\n" in out
    assert "export DISPATCH_SHARD_COUNT=4\n" in out
    assert re.search(
        r'^exec .* -m dispatcher .*stamp\.py Stamp .* --shard "\$DISPATCH_SHARD_INDEX/\$DISPATCH_SHARD_COUNT"$',
        out,
        re.M,
    )
    assert not (tmp_path / "logs").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "submit_args,extra,message",
    [
        ([], [], "--array N (the number of shards) is required"),
        (["--array", "0"], [], "argument --array: expected a positive integer, got '0'"),
        (["--array", "4"], ["--mixin", "cuont=3"], "did you mean 'count'"),
        (["--array", "4"], ["--shard", "1/4"], "--shard is chosen per array task"),
        (["--array", "4"], ["--backbone", "nope"], "unknown backbone 'nope'"),
        (["--array", "4", "--bogus"], [], "unrecognized arguments: --bogus"),
        (
            ["--array", "4", "--requeue", "--requeue-before", "30"],
            ["--grace", "30"],
            "--grace 30 must be shorter than --requeue-before 30",
        ),
    ],
    ids=["no-array", "zero", "mixin-typo", "own-shard", "backbone", "own-option", "grace"],
)
def test_configuration_errors_exit_2_before_anything_is_written(
    tmp_path, submit_args, extra, message
):
    command = stamp_command(tmp_path)
    done = run_dispatch("submit", *submit_args, "--", *command, *extra, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert all(line.startswith("dispatch: error: ") for line in done.stderr.splitlines())
    assert not (tmp_path / "logs").exists() and done.stdout == ""


def test_all_configuration_errors_come_together(tmp_path):
    command = stamp_command(tmp_path)
    done = run_dispatch(
        "submit", "--array", "4", "--", *command, "--shard", "0/4", "--mixin", "cuont=3",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--shard is chosen per array task" in done.stderr and "cuont" in done.stderr


def test_a_gpu_task_is_submittable_where_no_gpu_is(tmp_path):
    """The login node's devices are not the compute node's: --device cuda is only parsed."""
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the check needs one without")
    command = [
        str(REPO / "tasks" / "image_embed.py"), "ImageEmbed", "--backbone", "torch",
        "--device", "cuda", "--log-dir", str(tmp_path / "logs"),
        "--mixin", f"input={REPO / 'tasks' / 'data' / 'images'}", f"output={tmp_path / 'emb'}",
    ]  # fmt: skip
    here = run_dispatch(*command, cwd=tmp_path)
    assert here.returncode == 2 and "no cuda device" in here.stderr  # a run here is refused
    done = run_dispatch("submit", "--array", "2", "--dry-run", "--", *command, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--device cuda" in done.stdout
    # A misspelt device is still refused before anything is submitted.
    bad = [w if w != "cuda" else "cudda" for w in command]
    done = run_dispatch("submit", "--array", "2", "--dry-run", "--", *bad, cwd=tmp_path)
    assert done.returncode == 2 and "--device expects" in done.stderr


# --- a real cluster --------------------------------------------------------------------------


def _cluster_problem() -> str | None:
    """Why SLURM jobs cannot run here, or None when a controller and a usable node answer."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH (start a cluster: bash scripts/local-slurm.sh start)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15)
        if "is UP" not in ping.stdout:
            return "no SLURM controller answers `scontrol ping` (bash scripts/local-slurm.sh start)"
        nodes = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"SLURM does not answer: {exc}"
    if not {"idle", "mix", "alloc", "comp"} & set(nodes.stdout.split()):
        return f"no usable SLURM node (sinfo states: {nodes.stdout.split() or 'none'})"
    return None


_PROBLEM = _cluster_problem()
needs_cluster = pytest.mark.skipif(_PROBLEM is not None, reason=str(_PROBLEM))
JOB_TIMEOUT = 120.0


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return env


def submit(tmp_path: Path, *args: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """`dispatch submit ARGS`; the job ids it printed."""
    done = run_dispatch("submit", *args, cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return re.findall(r"^submitted job (\d+):", done.stdout, re.M), done


def in_queue(jobs: list[str]) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%F"], capture_output=True, text=True, timeout=30
    ).stdout.split()
    return [job for job in jobs if job in out]


def wait_for(jobs: list[str], timeout: float = JOB_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while in_queue(jobs):
        if time.monotonic() > deadline:
            subprocess.run(["scancel", *jobs], timeout=30)
            pytest.fail(f"jobs {jobs} still queued after {timeout:.0f}s")
        time.sleep(0.2)


def task_states(job: str) -> dict[int, tuple[str, int]]:
    """Array task id -> (JobState, exit code), from scontrol."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=30
    ).stdout
    states = {}
    for line in out.splitlines():
        task = re.search(r"\bArrayTaskId=(\d+)\b", line)
        state = re.search(r"\bJobState=(\w+)", line)
        code = re.search(r"\bExitCode=(\d+):(\d+)", line)
        if task and state and code:
            states[int(task[1])] = (state[1], int(code[1]))
    return states


@pytest.mark.slow
@needs_cluster
def test_submit_runs_every_shard_once(tmp_path, jobs):
    items, count = 200, 4
    ids, done = submit(
        tmp_path, "--array", str(count), "--time", "5", "--", *stamp_command(tmp_path, items)
    )
    jobs.extend(ids)
    assert len(ids) == 1, done.stdout
    wait_for(ids)
    (job,) = ids
    assert task_states(job) == {t: ("COMPLETED", 0) for t in range(count)}
    names = {f"item-{i:03d}" for i in range(items)}
    made = outputs(tmp_path)
    assert set(made) == names
    lines = journal(tmp_path)
    assert sorted(r["name"] for r in lines) == sorted(names), "an item was processed twice"
    for record in lines:  # the manifest's segments: contiguous runs of the sorted items
        segment = int(record["name"].removeprefix("item-")) // (items // count)
        assert record["shard"] == str(segment) == record["task"]
        assert record["job"] == job
    logs = tmp_path / "logs" / "slurm"
    assert sorted(p.name for p in logs.glob("*.out")) == [f"{job}_{t}.out" for t in range(count)]
    assert len(list(logs.glob("submit-*.sh"))) == 1  # the script is kept
    # Each array task's run record is named by its job and array task id.
    runs = [p.name for p in (tmp_path / "logs" / "Stamp").iterdir()]
    named = sorted(re.search(rf"-segment(\d)of4-{job}_(\d)-\d+$", r).groups() for r in runs)
    assert named == [(str(t), str(t)) for t in range(count)]


def _managed_cluster_problem() -> str | None:
    if _PROBLEM is not None:
        return _PROBLEM
    if os.geteuid() != 0:
        return "changing MaxArraySize needs root (scripts/local-slurm.sh)"
    try:
        text = Path("/etc/slurm/slurm.conf").read_text()
    except OSError:
        return "no /etc/slurm/slurm.conf"
    if "Written by scripts/local-slurm.sh" not in text:
        return "the cluster is not the local one of scripts/local-slurm.sh: MaxArraySize stays"
    return None


def _local_slurm(max_array: int) -> None:
    env = {**clean_env(), "LOCAL_SLURM_MAX_ARRAY": str(max_array)}
    subprocess.run(
        ["bash", str(REPO / "scripts" / "local-slurm.sh"), "start"],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def small_max_array_size():
    """The local cluster reconfigured with MaxArraySize=8 (ids 0..7), then put back."""
    before = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
    ).stdout
    previous = read_max_array_size(before) or 1001
    _local_slurm(8)
    try:
        yield 8
    finally:
        _local_slurm(previous)


@pytest.mark.slow
@pytest.mark.skipif(_managed_cluster_problem() is not None, reason=str(_managed_cluster_problem()))
def test_twenty_shards_above_max_array_size_are_split(tmp_path, jobs, small_max_array_size):
    items, count = 120, 20
    command = stamp_command(tmp_path, items)
    refused = subprocess.run(  # its log, were it taken, under tmp_path: never in the repository
        ["sbatch", "--array=0-19", f"--chdir={tmp_path}", f"--output={tmp_path}/%A_%a.out",
         "--wrap=true"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode != 0  # the cluster itself would not take 20 ids
    ids, done = submit(  # each task walks and keeps its hash shard
        tmp_path,
        "--array",
        str(count),
        "--parallel",
        "4",
        "--no-manifest",
        "--time",
        "5",
        "--",
        *command,
    )
    jobs.extend(ids)
    assert len(ids) == 3, done.stdout
    assert re.findall(r"shards (\S+) of 20 \(array (\S+)\)", done.stdout) == [
        ("0-7", "0-7"), ("8-15", "0-7"), ("16-19", "0-3"),
    ]  # fmt: skip
    wait_for(ids, timeout=240)
    for job, size in zip(ids, (8, 8, 4), strict=True):
        assert task_states(job) == {t: ("COMPLETED", 0) for t in range(size)}, job
    lines = journal(tmp_path)
    names = sorted(f"item-{i:03d}" for i in range(items))
    assert sorted(r["name"] for r in lines) == names, "an item was missed or processed twice"
    offsets = dict(zip(ids, (0, 8, 16), strict=True))
    for record in lines:
        shard = hash_bucket(record["name"], count)
        assert record["shard"] == str(shard)
        assert offsets[record["job"]] + int(record["task"]) == shard


# --- an array over a manifest: one walk in total ----------------------------------------------


def walked_command(tmp_path: Path, n: int = 40) -> list[str]:
    """The Walked task over n files (it notes each walk of its input in tmp_path/walks)."""
    for i in range(n):
        path = tmp_path / "in" / f"d{i % 4}" / f"f{i:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x" * i)
    return [str(task_file("manifest_walks")), "Walked", "--backbone", "serial",
            "--log-dir", str(tmp_path / "logs"), "--mixin", f"input={tmp_path / 'in'}",
            f"output={tmp_path / 'out'}", f"walks={tmp_path / 'walks'}"]  # fmt: skip


def walks(tmp_path: Path) -> int:
    path = tmp_path / "walks"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_dry_run_with_a_manifest_says_where_it_would_go_and_writes_nothing(tmp_path):
    command = walked_command(tmp_path, 6)
    done = run_dispatch("submit", "--array", "2", "--manifest", "--dry-run", "--", *command,
                        cwd=tmp_path, env=clean_env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    (path,) = re.findall(
        r"the manifest would be written to (\S+) \(nothing is written\)", done.stderr
    )
    assert f"--manifest {path}" in done.stdout and not Path(path).exists()
    assert walks(tmp_path) == 0 and not (tmp_path / "logs").exists()


@pytest.mark.slow
@needs_cluster
def test_an_array_over_a_manifest_walks_once_and_makes_what_one_run_makes(tmp_path, jobs):
    command = walked_command(tmp_path)
    whole = run_dispatch(*command, "--mixin", f"output={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    before = walks(tmp_path)
    ids, done = submit(tmp_path, "--array", "3", "--manifest", "--time", "5", "--", *command)
    jobs.extend(ids)
    assert "items in 3 segments" in done.stderr and walks(tmp_path) == before + 1
    wait_for(ids)
    assert task_states(ids[0]) == {t: ("COMPLETED", 0) for t in range(3)}
    assert tree(tmp_path / "out") == tree(tmp_path / "whole")
    assert walks(tmp_path) == before + 1  # no array task walked the input
    # status and --resubmit read the manifest the submission recorded: no walk either
    (tmp_path / "out" / "d1" / "f005.txt.out").unlink()
    shown = run_dispatch("status", "--json", "--", *command, cwd=tmp_path, env=clean_env())
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["totals"] == {**report["totals"], "items": 40, "done": 39, "to_run": 1}
    assert sorted(row["items"] for row in report["shards"]) == [13, 13, 14]
    # The page's command for one shard by hand reads that shard's segment, not a hash shard.
    page = tmp_path / "status.html"
    drawn = run_dispatch("status", "--html", page, "--", *command, cwd=tmp_path, env=clean_env())
    assert drawn.returncode == 0, drawn.stderr
    path, shard = report["manifest"]["path"], report["shards"].index(
        next(row for row in report["shards"] if row["to_run"])
    )
    text = html.unescape(page.read_text())
    assert f"--manifest {path} --shard {shard}/3" in text
    assert f"items from the manifest <code>{path}</code> made" in text
    assert "dispatch submit --resubmit --replan --array 3 -- " in text
    again, done = submit(tmp_path, "--resubmit", "--time", "5", "--", *command)
    jobs.extend(again)
    assert len(again) == 1, done.stdout
    wait_for(again)
    assert tree(tmp_path / "out") == tree(tmp_path / "whole")
    assert walks(tmp_path) == before + 1


@pytest.mark.slow
@needs_cluster
def test_input_added_after_submit_is_found_only_by_replan(tmp_path, jobs):
    """An array reads the manifest written when it was submitted (the default): files added
    later are run by no task and counted by no status or --resubmit, until --replan walks
    again and submits them as new shards, leaving the old ones as they were."""
    command = walked_command(tmp_path, 12)
    ids, done = submit(tmp_path, "--array", "2", "--time", "5", "--", *command)
    jobs.extend(ids)
    assert "12 items in 2 segments" in done.stderr and walks(tmp_path) == 1
    wait_for(ids)
    for i in range(12, 20):
        path = tmp_path / "in" / "new" / f"g{i:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("y" * i)
    shown = run_dispatch("status", "--", *command, cwd=tmp_path, env=clean_env())
    assert shown.returncode == 0 and shown.stdout.splitlines()[-1].split()[1] == "12"
    assert "input added since is counted once dispatch submit --resubmit --replan" in shown.stderr
    same = run_dispatch("submit", "--resubmit", "--", *command, cwd=tmp_path, env=clean_env())
    assert same.returncode == 0 and "nothing to submit: all 2 shards" in same.stdout, same.stderr
    assert walks(tmp_path) == 1 and not (tmp_path / "out" / "new").exists()
    lone = run_dispatch("submit", "--array", "2", "--replan", "--", *command, cwd=tmp_path,
                        env=clean_env())  # fmt: skip
    assert lone.returncode == 2 and "--replan" in lone.stderr and "--resubmit" in lone.stderr
    (manifest,) = (tmp_path / "logs" / "manifests").glob("*.manifest")
    written = manifest.read_bytes()
    dry = run_dispatch("submit", "--resubmit", "--replan", "--dry-run", "--", *command,
                       cwd=tmp_path, env=clean_env())  # fmt: skip
    assert dry.returncode == 0 and "#SBATCH --array=2-3" in dry.stdout, dry.stderr
    assert manifest.read_bytes() == written and "nothing is written" in dry.stderr
    assert "replan: 8 new items since" in dry.stderr and walks(tmp_path) == 2
    grown, done = submit(tmp_path, "--resubmit", "--replan", "--time", "5", "--", *command)
    jobs.extend(grown)
    assert "replan: 8 new items since" in done.stderr and "segments 2-3" in done.stderr
    assert len(grown) == 1 and "shards 2-3 of 4" in done.stdout and walks(tmp_path) == 3
    assert "nothing to submit" not in done.stdout
    wait_for(grown)
    assert task_states(grown[0]) == {t: ("COMPLETED", 0) for t in (2, 3)}
    whole = run_dispatch(*command, "--mixin", f"output={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert tree(tmp_path / "out") == tree(tmp_path / "whole")
    # status takes the new N, and the old shards keep the records of their runs
    shown = run_dispatch("status", "--json", "--", *command, cwd=tmp_path, env=clean_env())
    report = json.loads(shown.stdout)
    assert report["shard_count"] == 4 and report["totals"]["items"] == 20
    assert report["manifest"]["counts"] == [2, 4] and report["manifest"]["items"] == 20
    assert report["totals"]["to_run"] == 0
    assert all(row["outcome"] == "success" for row in report["shards"]), report
    old = run_dispatch("status", "--array", "2", "--", *command, cwd=tmp_path, env=clean_env())
    assert old.returncode == 2 and "give --array 4" in old.stderr, old.stderr
