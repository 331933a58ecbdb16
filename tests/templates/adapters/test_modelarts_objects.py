"""ModelArts operator packages over object storage, against a real S3-compatible server
(moto's, over HTTP on 127.0.0.1): the `moxing.file` stand-in on URLs, mode-1 packages
bucket to bucket as on local folders, `obs_input_path` / `obs_output_path` carrying the
URLs, and mode-2 packages whose done marker reaches the store only after Process returned."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
from conftest import REPO, run_dispatch, tree, write_file
from helpers_s3 import count

OPERATORS = REPO / "tasks" / "operators"
SHIMS = REPO / "templates" / "adapters" / "shims"


def _jsonl_data(root: Path, files: int = 4) -> Path:
    for i in range(files):
        rows = [{"id": i * 10 + j, "text": f"  Row   {j} of\tFile {i} "} for j in range(3)]
        rows += [{"id": i * 10 + 9, "text": "x"}, {"id": 999, "text": "shared row"}]
        write_file(root / ("sub" if i % 2 else "") / f"f{i}.jsonl",
                   "".join(json.dumps(r) + "\n" for r in rows))  # fmt: skip
    return root


def _dispatch(s3, *args, **kw):
    return run_dispatch(*args, env=s3.full_env(), **kw)


def _store_tree(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under the prefix but the run's provenance record."""
    return {k: v for k, v in s3.tree(bucket, prefix).items() if not k.startswith(".dispatch-run")}


def _writes(s3, mark: int) -> list[tuple[str, str]]:
    """The requests since `mark` that change the store (PUT, POST, DELETE)."""
    return [r for r in s3.requests(mark) if r[0] in ("PUT", "POST", "DELETE")]


# --- the moxing stand-in on URLs -----------------------------------------------------------


@pytest.fixture
def mox(s3_server, monkeypatch, tmp_path):
    """`import moxing as mox` as operator code does, talking to the test store from this
    process, with a scratch folder of the test's own."""
    from dispatcher.storage import client, scratch

    s3_server.apply_env(monkeypatch)
    monkeypatch.delenv(client.OPTIONS_VARIABLE, raising=False)
    monkeypatch.setattr(client, "_filesystems", {})
    monkeypatch.setenv(scratch.SCRATCH_VARIABLE, str(tmp_path / "scratch"))
    monkeypatch.setenv("DISPATCH_SCRATCH_FOLDER", "")  # not an earlier run's folder
    monkeypatch.setattr(scratch, "_mine", {})
    return _import_moxing(monkeypatch)


def _import_moxing(monkeypatch):
    monkeypatch.syspath_prepend(str(SHIMS))
    return importlib.import_module("moxing")


def _scratch_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "scratch").rglob("*") if p.is_file()]


def test_moxing_reads_writes_lists_and_removes_objects(mox, s3_server, tmp_path):
    s3, bucket = s3_server, s3_server.bucket()
    base = f"s3://{bucket}/data"
    mox.file.write(f"{base}/a.txt", "héllo\n")
    mox.file.write(f"{base}/a.txt", "more\n", append=True)
    mox.file.write(f"{base}/sub/b.bin", b"\x00\x01")
    mox.file.write(f"{base}/sub/deeper/c.txt", "c")
    assert s3.tree(bucket, "data") == {
        "a.txt": "héllo\nmore\n".encode(), "sub/b.bin": b"\x00\x01", "sub/deeper/c.txt": b"c",
    }  # fmt: skip
    assert mox.file.read(f"{base}/a.txt") == "héllo\nmore\n"
    assert mox.file.read(f"{base}/sub/b.bin", binary=True) == b"\x00\x01"
    # "Folders" are prefixes: listed directly under, or as relative file paths.
    assert mox.file.list_directory(base) == ["a.txt", "sub"]
    assert mox.file.list_directory(f"{base}/sub/") == ["b.bin", "deeper"]
    expected = ["a.txt", "sub/b.bin", "sub/deeper/c.txt"]
    assert mox.file.list_directory(base, recursive=True) == expected
    with pytest.raises(FileNotFoundError):
        mox.file.list_directory(f"{base}/nothing")
    assert mox.file.exists(f"{base}/a.txt") and mox.file.exists(f"{base}/sub")
    assert not mox.file.exists(f"{base}/missing.txt")
    assert mox.file.is_directory(f"{base}/sub") and mox.file.is_directory(f"s3://{bucket}")
    assert not mox.file.is_directory(f"{base}/a.txt") and not mox.file.is_directory(f"{base}/no")
    assert mox.file.glob(f"{base}/**/*.txt") == [f"{base}/a.txt", f"{base}/sub/deeper/c.txt"]
    assert mox.file.glob(f"{base}/*.txt") == [f"s3://{bucket}/data/a.txt"]
    # obs:// is the same store (S3-compatible), named as on ModelArts.
    assert mox.file.read(f"obs://{bucket}/data/sub/deeper/c.txt") == "c"
    mark = s3.mark()
    mox.file.make_dirs(f"{base}/new/folder")  # a prefix exists with its first object
    if s3.counts_requests:
        assert s3.requests(mark) == []
    with pytest.raises(IsADirectoryError):
        mox.file.remove(f"{base}/sub")
    mox.file.remove(f"{base}/a.txt")
    assert s3.keys(bucket, "data") == ["sub/b.bin", "sub/deeper/c.txt"]
    mox.file.remove(f"{base}/sub", recursive=True)
    assert s3.keys(bucket, "data") == []
    with pytest.raises(FileNotFoundError):
        mox.file.remove(f"{base}/sub")
    with pytest.raises(ValueError, match="only local paths and s3:// or obs:// URLs"):
        mox.file.exists("hdfs://cluster/x")


def test_moxing_copies_between_local_folders_and_the_store(mox, s3_server, tmp_path):
    s3, bucket = s3_server, s3_server.bucket()
    src = tmp_path / "src"
    write_file(src / "a" / "x.txt", "x")
    write_file(src / "y.txt", "y")
    files = {"a/x.txt": b"x", "y.txt": b"y"}
    mox.file.copy_parallel(str(src), f"s3://{bucket}/up")
    assert s3.tree(bucket, "up") == files
    mox.file.copy_parallel(f"obs://{bucket}/up", f"s3://{bucket}/again")  # store to store
    assert s3.tree(bucket, "again") == files
    mox.file.copy_parallel(f"s3://{bucket}/again/", str(tmp_path / "down"))
    assert tree(tmp_path / "down") == files
    mox.file.copy(f"s3://{bucket}/up/a/x.txt", str(tmp_path / "one" / "x.txt"))
    assert (tmp_path / "one" / "x.txt").read_bytes() == b"x"
    mox.file.copy(str(src / "y.txt"), f"s3://{bucket}/single/y.txt")
    mox.file.copy(f"s3://{bucket}/single/y.txt", f"s3://{bucket}/single/z.txt")
    mox.file.copy_parallel(f"s3://{bucket}/single/z.txt", f"s3://{bucket}/single/w.txt")
    assert s3.tree(bucket, "single") == {"w.txt": b"y", "y.txt": b"y", "z.txt": b"y"}
    with pytest.raises(FileNotFoundError):
        mox.file.copy(f"s3://{bucket}/nothing.txt", str(tmp_path / "nothing.txt"))
    assert _scratch_files(tmp_path) == []


def test_moxing_file_reads_objects_and_uploads_whole_on_close(mox, s3_server, tmp_path):
    s3, bucket = s3_server, s3_server.bucket()
    url = f"obs://{bucket}/f/rows.jsonl"
    with mox.file.File(url, "w") as fh:
        fh.write('{"a": 1}\n')
        assert s3.keys(bucket, "f") == []  # nothing at the key before the file is closed
        fh.write('{"a": 2}\n')
    with mox.file.File(url, "r") as fh:
        assert [json.loads(line)["a"] for line in fh] == [1, 2]
    with mox.file.File(url, "rb") as fh:
        assert fh.read() == b'{"a": 1}\n{"a": 2}\n'
    with mox.file.File(url, "a") as fh:
        fh.write('{"a": 3}\n')
    fh = mox.file.File(url, "r")
    assert fh.read().count("\n") == 3 and not fh.closed
    fh.close()
    assert fh.closed
    with pytest.raises(RuntimeError), mox.file.File(url, "w") as fh:  # noqa: PT012
        fh.write("half")
        raise RuntimeError("the operator failed mid-write")
    assert mox.file.read(url).count("\n") == 3  # the earlier object stands, never a part
    with pytest.raises(FileNotFoundError):
        mox.file.File(f"s3://{bucket}/f/missing.txt", "r")
    assert _scratch_files(tmp_path) == []
    local = tmp_path / "local.txt"
    with mox.file.File(str(local), "w") as fh:  # a local path is a plain file
        fh.write("here")
    assert mox.file.read(str(local)) == "here"


def test_moxing_says_a_store_it_cannot_use_in_one_line(monkeypatch):
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    from dispatcher.storage import client

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv(client.OPTIONS_VARIABLE, raising=False)
    monkeypatch.setattr(client, "_filesystems", {})
    mox = _import_moxing(monkeypatch)
    with pytest.raises(OSError, match=r"^obs://bucket/x: no credentials for the object store"):
        mox.file.read("obs://bucket/x")


# --- mode 1: one item per file, bucket to bucket -------------------------------------------


@pytest.mark.slow
def test_a_mode_1_package_runs_bucket_to_bucket_as_on_local_folders(s3_server, tmp_path):
    s3, bucket = s3_server, s3_server.bucket()
    data = _jsonl_data(tmp_path / "in")
    s3.upload_tree(data, bucket, "in")
    package = str(OPERATORS / "text_clean")
    common = [package, "--backbone", "serial", "--log-dir", tmp_path / "logs", "--mixin",
              "min_chars=3", "case=lower"]  # fmt: skip
    local = run_dispatch(*common, f"input={data}", f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    args = [*common, f"input=s3://{bucket}/in", f"output=s3://{bucket}/out"]
    made = _dispatch(s3, *args, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "ran 4 (4 ok, 0 failed)" in made.stderr, made.stderr
    expected = tree(tmp_path / "out")
    assert sorted(expected) == ["f0.jsonl", "f2.jsonl", "sub/f1.jsonl", "sub/f3.jsonl"]
    assert _store_tree(s3, bucket, "out") == expected  # byte for byte
    mark = s3.mark()
    again = _dispatch(s3, *args, cwd=tmp_path)
    assert again.returncode == 0 and "all done" in again.stderr, again.stderr
    if s3.counts_requests:
        assert _writes(s3, mark) == []
        assert count(s3.requests(mark), "GET", f"/{bucket}/in/") == 0  # no input is read


_ARGS_PACKAGE = """\
    class Process:
        def __init__(self, args):
            self.args = args

        def __call__(self, df):
            df["seen_input"] = self.args["obs_input_path"]
            df["seen_output"] = self.args.obs_output_path
            return df
"""


@pytest.mark.slow
def test_a_mode_1_package_gets_the_store_urls_as_its_obs_paths(s3_server, tmp_path):
    s3, bucket = s3_server, s3_server.bucket()
    package = tmp_path / "args_op"
    write_file(package / "program_package" / "process.py", _ARGS_PACKAGE)
    s3.upload_tree(_jsonl_data(tmp_path / "in", files=1), bucket, "in")
    proc = _dispatch(s3, package, "--backbone", "serial", "--log-dir", tmp_path / "logs",
                     "--mixin", f"input=obs://{bucket}/in/", f"output=obs://{bucket}//out",
                     cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in s3.tree(bucket, "out")["f0.jsonl"].splitlines()]
    assert {(r["seen_input"], r["seen_output"]) for r in rows} == {
        (f"obs://{bucket}/in", f"obs://{bucket}/out")
    }
    local = run_dispatch(package, "--backbone", "serial", "--log-dir", tmp_path / "logs",
                         "--mixin", "input=in", "output=out", cwd=tmp_path)  # fmt: skip
    assert local.returncode == 0, local.stderr
    row = json.loads((tmp_path / "out" / "f0.jsonl").read_text().splitlines()[0])
    assert (row["seen_input"], row["seen_output"]) == (str(tmp_path / "in"), str(tmp_path / "out"))


# --- mode 2: the whole dataset, the done marker beside the output prefix -------------------


@pytest.mark.slow
def test_a_mode_2_package_runs_over_a_bucket_with_its_marker_beside_the_output(s3_server, tmp_path):
    """`dedup` stages the input with moxing and writes with it: over obs:// roots it makes
    what it makes locally, and the marker and record go beside the output prefix."""
    s3, bucket = s3_server, s3_server.bucket()
    data = _jsonl_data(tmp_path / "in")
    s3.upload_tree(data, bucket, "data/in")
    package = OPERATORS / "dedup"
    common = [package, "--backbone", "serial", "--log-dir", tmp_path / "logs", "--mixin"]
    local = run_dispatch(*common, f"input={data}", f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    args = [*common, f"input=obs://{bucket}/data/in", f"output=obs://{bucket}/data/out"]
    made = _dispatch(s3, *args, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert s3.tree(bucket, "data/out") == tree(tmp_path / "out")  # the operator's files only
    beside = s3.tree(bucket, "data")
    marker = json.loads(beside[".out.modelarts-done"])
    assert marker == {"package": str(package), "name": "dedup"}
    assert ".out.dispatch-run.dedup" in beside
    mark = s3.mark()
    again = _dispatch(s3, *args, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    if s3.counts_requests:
        assert _writes(s3, mark) == []
    drift = _dispatch(s3, *args, "field=id", cwd=tmp_path / "logs")
    assert drift.returncode == 0 and "made with another configuration (" in drift.stderr


_FAILING_PACKAGE = """\
    import moxing as mox


    class Process:
        def __init__(self, args):
            self.args = args

        def __call__(self, df):
            names = mox.file.list_directory(self.args.obs_input_path, recursive=True)
            with mox.file.File(self.args.obs_output_path + "/seen.txt", "w") as fh:
                fh.write(self.args.obs_input_path + " " + ",".join(names))
            if self.args.fail:
                raise RuntimeError("failed after writing")
"""


@pytest.mark.slow
def test_a_mode_2_marker_reaches_the_store_only_after_process_returned(s3_server, tmp_path):
    s3, bucket = s3_server, s3_server.bucket()
    package = tmp_path / "flaky_op"
    write_file(package / "program_package" / "process.py", _FAILING_PACKAGE)
    write_file(package / "operator.yaml", """\
        auto-data-loading: false
        arguments:
          - {name: fail, type: bool, default: false}
    """)  # fmt: skip
    s3.upload_tree(_jsonl_data(tmp_path / "in", files=2), bucket, "in")
    args = [package, "--backbone", "serial", "--log-dir", tmp_path / "logs", "--mixin",
            f"input=s3://{bucket}/in", f"output=s3://{bucket}/out"]  # fmt: skip
    failed = _dispatch(s3, *args, "fail=true", cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    assert "failed after writing" in failed.stderr
    assert s3.keys(bucket, "out") == ["seen.txt"]  # what Process wrote, but no marker
    assert ".out.modelarts-done" not in s3.keys(bucket)
    fixed = _dispatch(s3, *args, cwd=tmp_path)
    assert fixed.returncode == 0 and "ran 1 (1 ok" in fixed.stderr, fixed.stderr
    assert s3.tree(bucket, "out") == {
        "seen.txt": f"s3://{bucket}/in f0.jsonl,sub/f1.jsonl".encode()
    }
    assert ".out.modelarts-done" in s3.keys(bucket)
    again = _dispatch(s3, *args, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr


def test_a_mode_2_output_that_is_a_whole_bucket_is_refused(s3_server, tmp_path):
    s3, bucket = s3_server, s3_server.bucket()
    proc = _dispatch(s3, OPERATORS / "dedup", "--backbone", "serial", "--log-dir",
                     tmp_path / "logs", "--mixin", f"input=s3://{bucket}/in",
                     f"output=s3://{bucket}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "is a whole bucket: name a prefix in it" in proc.stderr
    assert s3.keys(bucket) == []
