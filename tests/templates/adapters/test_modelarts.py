"""ModelArts operator packages run by `dispatch PACKAGE_DIR`: the example packages end to
end (rerun, shards, SIGKILL), where each class runs on each backbone, and malformed
packages refused before any work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TASKS, backbone_params, run_dispatch, run_record, tree, write_file

OPERATORS = REPO / "tasks" / "operators"


def _jsonl_data(root: Path, files: int = 6) -> Path:
    for i in range(files):
        lines = [{"id": i * 10 + j, "text": f"  Row   {j} of\tfile {i} "} for j in range(4)]
        lines.append({"id": i * 10 + 9, "text": "x"})
        lines.append({"id": 999, "text": "shared row"})
        folder = root / ("sub" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return root


def _png_data(root: Path, files: int = 5) -> Path:
    from PIL import Image

    root.mkdir(parents=True)
    for i in range(files):
        Image.new("RGB", (10 + i, 20 + 2 * i), (i * 40, 0, 0)).save(root / f"img{i}.png")
    return root


def _parquet_data(root: Path, files: int = 4) -> Path:
    import pandas as pd

    root.mkdir(parents=True)
    for i in range(files):
        frame = pd.DataFrame(
            {
                "id": pd.Series([i * 10 + j for j in range(5)], dtype="int64"),
                "score": [0.1 * j + 0.05 * i for j in range(5)],
                "flag": [j % 2 == 0 for j in range(5)],
                "name": [f"n{j}" for j in range(5)],
            }
        )
        frame.to_parquet(root / f"part{i}.parquet", index=False)
    return root


EXAMPLES = {
    # package, data maker, extra --mixin values, the outputs expected per input key
    "text_clean": (_jsonl_data, ["min_chars=3", "case=lower"], lambda k: k),
    "image_meta": (_png_data, ["thumb_size=8"], lambda k: k + ".jsonl"),
    "parquet_filter": (_parquet_data, ["threshold=0.3"], lambda k: k),
    "dedup": (_jsonl_data, ["field=text"], None),
}


def _command(package: str, src: Path, out: Path, logs: Path, *extra: str) -> list[str]:
    mixin = EXAMPLES[package][1]
    return [
        str(OPERATORS / package), "--backbone", "serial", "--log-dir", str(logs),
        *extra, "--mixin", f"input={src}", f"output={out}", *mixin,
    ]  # fmt: skip


def _outputs(out: Path) -> dict[str, bytes]:
    return tree(out) if out.exists() else {}


@pytest.mark.slow
@pytest.mark.parametrize("package", list(EXAMPLES))
def test_example_runs_reruns_nothing_and_shards_union_to_one_run(package, tmp_path):
    make, _, _ = EXAMPLES[package]
    src, logs = make(tmp_path / "in"), tmp_path / "logs"
    full = tmp_path / "full"
    proc = run_dispatch(*_command(package, src, full, logs), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    made = _outputs(full)
    assert made and not any(".dispatch-" in name for name in made)
    again = run_dispatch(*_command(package, src, full, logs), cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    assert _outputs(full) == made
    sharded = tmp_path / "sharded"
    for shard in ("0/2", "1/2"):
        part = run_dispatch(*_command(package, src, sharded, logs, "--shard", shard), cwd=tmp_path)
        assert part.returncode == 0, part.stderr
    assert _outputs(sharded) == made


def _check_example_outputs(package: str, src: Path, out: Path) -> None:
    import pandas as pd

    if package == "text_clean":
        rows = [json.loads(x) for x in (out / "f0.jsonl").read_text().splitlines()]
        assert rows[0] == {"id": 0, "text": "row 0 of file 0"}
        assert {r["id"] for r in rows} == {0, 1, 2, 3, 999}  # "x" is shorter than 3
        assert sorted(_outputs(out)) == sorted(p.relative_to(src).as_posix()
                                               for p in src.rglob("*.jsonl"))  # fmt: skip
    elif package == "image_meta":
        rows = [json.loads(x) for x in (out / "img3.png.jsonl").read_text().splitlines()]
        assert rows == [{"file_name": "img3.png", "width": 13, "height": 26, "mode": "RGB",
                         "format": "PNG", "thumb": [4, 8]}]  # fmt: skip
    elif package == "parquet_filter":
        frame = pd.read_parquet(out / "part1.parquet")
        assert list(frame.columns) == ["id", "score", "flag", "name", "rank"]
        assert str(frame["id"].dtype) == "int64" and str(frame["flag"].dtype) == "bool"
        assert list(frame["id"]) == [13, 14] and list(frame["rank"]) == [2, 1]
    else:
        texts = [json.loads(x)["text"] for p in sorted(out.rglob("*.jsonl"))
                 for x in p.read_text().splitlines()]  # fmt: skip
        assert len(texts) == len(set(texts)) and texts.count("shared row") == 1
        marker = out.parent / f".{out.name}.modelarts-done"
        assert marker.is_file()  # beside the output root, not in it
        assert not any(".modelarts-done" in name for name in _outputs(out))


@pytest.mark.slow
@pytest.mark.parametrize("backbone", backbone_params(["mp", "torch"]))
@pytest.mark.parametrize("package", list(EXAMPLES))
def test_example_outputs_are_right_on_every_backbone(package, backbone, tmp_path):
    make, _, _ = EXAMPLES[package]
    src, out = make(tmp_path / "in"), tmp_path / "out"
    command = _command(package, src, out, tmp_path / "logs")
    command[command.index("serial")] = backbone
    command += ["--num-workers", "1", "--device", "cpu"] if backbone == "torch" else []
    command += ["--num-process", "2"] if backbone == "mp" else []
    proc = run_dispatch(*command, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    _check_example_outputs(package, src, out)


@pytest.mark.slow
@pytest.mark.parametrize("package", list(EXAMPLES))
def test_example_killed_mid_run_leaves_nothing_counted_done(package, tmp_path):
    make, _, _ = EXAMPLES[package]
    src, logs = make(tmp_path / "in"), tmp_path / "logs"
    reference = tmp_path / "reference"
    assert run_dispatch(*_command(package, src, reference, logs), cwd=tmp_path).returncode == 0
    hook = TASKS / "operators_modelarts_kill_hook"
    keys = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    victim = package if EXAMPLES[package][2] is None else keys[len(keys) // 2]
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY")}
    env.update(CRASH_AT=victim, PYTHONPATH=f"{hook}{os.pathsep}{REPO}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", *_command(package, src, out, logs)],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    committed = _outputs(out)
    expected = _outputs(reference)
    done = {EXAMPLES[package][2](k) for k in keys} if EXAMPLES[package][2] else set()
    for name, data in committed.items():  # what is at a final path is whole and right
        if ".dispatch-" not in name and name in done:
            assert data == expected[name], name
    if EXAMPLES[package][2] is not None:
        assert EXAMPLES[package][2](victim) not in committed
    else:
        assert not (out.parent / f".{out.name}.modelarts-done").exists()
    rerun = run_dispatch(*_command(package, src, out, logs), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "ran 0 " not in rerun.stderr
    assert _outputs(out) == expected


def _placement_package(tmp_path: Path) -> Path:
    package = shutil.copytree(TASKS / "operators_modelarts_placement", tmp_path / "where_op")
    data = tmp_path / "in"
    data.mkdir()
    for i in range(4):
        (data / f"r{i}.jsonl").write_text(json.dumps({"i": i}) + "\n")
    return package


@pytest.mark.slow
@pytest.mark.parametrize("backbone", backbone_params(["serial", "mp", "torch"]))
def test_each_class_runs_where_its_backbone_places_that_step(backbone, tmp_path):
    package = _placement_package(tmp_path)
    out = tmp_path / "out"
    extra = {"serial": [], "mp": ["--num-process", "2"],
             "torch": ["--device", "cpu", "--num-workers", "1", "--batch-size", "2"]}[backbone]  # fmt: skip
    proc = run_dispatch(
        str(package), "--backbone", backbone, *extra, "--log-dir", str(tmp_path / "logs"),
        "--mixin", f"input={tmp_path / 'in'}", f"output={out}", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads((out / f"r{i}.jsonl").read_text()) for i in range(4)]
    assert all(r["tag"] == "t" for r in rows)
    pid = lambda where: where.split(":")[0]  # noqa: E731
    thread = lambda where: where.split(":")[1]  # noqa: E731
    for r in rows:
        if backbone == "torch":  # DataLoader worker / device thread / writer thread
            assert pid(r["pre"]) != pid(r["proc"]) == pid(r["post"])
            assert thread(r["proc"]) != thread(r["post"])
        else:
            assert r["pre"] == r["proc"] == r["post"]
    # Each class built once per process that runs it.
    assert len({r["pre_built"] for r in rows}) == len({pid(r["pre"]) for r in rows})


BAD_ROWS = '{"text": "ok"}\n{"text": broken\n'


@pytest.mark.parametrize("backbone", backbone_params(["serial", "mp", "torch", "ray"]))
def test_an_unreadable_row_is_malformed_input_exit_2_naming_file_and_line(tmp_path, backbone):
    """The bad file writes nothing and is not retried, the good one is made, the run exits
    2 with one error line naming file:line; fixed, a rerun makes only the bad file."""
    data = tmp_path / "in"
    write_file(data / "good.jsonl", '{"text": "a b"}\n')
    write_file(data / "bad.jsonl", BAD_ROWS)
    out, logs = tmp_path / "out", tmp_path / "l"
    options = ["--device", "cpu", "--num-workers", "1"] if backbone == "torch" else []
    command = [
        str(OPERATORS / "text_clean"), "--backbone", backbone, *options, "--retries", "2",
        "--log-dir", str(logs), "--mixin", f"input={data}", f"output={out}",
    ]  # fmt: skip
    proc = run_dispatch(*command, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dispatch: error:")]
    assert errors == [
        f"dispatch: error: {data / 'bad.jsonl'}:2: not a JSON row: "
        "Expecting value: line 1 column 10 (char 9)"
    ], proc.stderr
    assert "retrying" not in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(_outputs(out)) == ["good.jsonl"]  # nothing of bad.jsonl, no staging left
    record = run_record(logs)
    assert record["exit_code"] == 2 and record["outcome"] == "malformed input"
    assert record["counts"]["malformed_inputs"] == 1 and record["counts"]["succeeded"] == 1

    write_file(data / "bad.jsonl", '{"text": "ok"}\n{"text": "fixed"}\n')
    shutil.rmtree(logs)
    again = run_dispatch(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert run_record(logs)["counts"]["ran"] == 1
    assert sorted(_outputs(out)) == ["bad.jsonl", "good.jsonl"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", b"a,b\n1,2\n1,2,3\n", "bad.csv: not a CSV table: Error tokenizing data. "
         "C error: Expected 2 fields in line 3, saw 3"),
        ("bad.parquet", b"PAR1 not parquet at all", "bad.parquet: not a Parquet file: "),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": "\xff"}\n', "bad.jsonl:2: not UTF-8 text: "
         "invalid start byte"),
        ("bad.jsonl", b'{"text": "ok"}\n[1, 2]\n', "bad.jsonl:2: expected a JSON object, got [1, 2]"),
    ],
)  # fmt: skip
def test_every_unreadable_table_is_malformed_input(tmp_path, name, content, message):
    data, out = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    (data / name).write_bytes(content)
    proc = run_dispatch(
        str(_package(tmp_path)),
        "--backbone", "serial", "--log-dir", str(tmp_path / "l"),
        "--mixin", f"input={data}", f"output={out}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"dispatch: error: {data / message}" in proc.stderr, proc.stderr
    assert _outputs(out) == {}


IDENTITY = (
    "class Process:\n    def __init__(self, args): pass\n    def __call__(self, df): return df\n"
)


def _package(tmp_path: Path, code: str | None = IDENTITY,
             spec: str | None = None, program: bool = True) -> Path:  # fmt: skip
    package = tmp_path / "pkg"
    package.mkdir()
    if program:
        (package / "program_package").mkdir()
    if code is not None and program:
        (package / "program_package" / "process.py").write_text(code)
    if spec is not None:
        (package / "operator.yaml").write_text(spec)
    return package


GOOD_SPEC = """\
arguments:
  - {name: n, type: int, default: 1}
  - {name: mode, type: enum, enum_list: [a, b], default: a}
  - {name: opts, type: json, default: '{"k": 1}'}
"""


@pytest.mark.parametrize(
    "make, mixin, message",
    [
        (lambda p: _package(p, program=False, spec="arguments: []\n"), [], "has no program_package/"),
        (lambda p: _package(p, code=None), [], "has no program_package/process.py"),
        (lambda p: _package(p, code="class Process(:\n"), [], "process.py:1: "),
        (lambda p: _package(p, code="class Other:\n    pass\n"), [], "defines no class Process"),
        (lambda p: _package(p, spec="arguments:\n  - {name: a\n"), [], "operator.yaml:3: "),
        (lambda p: _package(p, spec="arguments:\n  - name: a\n    type: tensor\n"), [],
         "operator.yaml:2: argument 'a' has type 'tensor'"),
        (lambda p: _package(p, spec="auto-data-loading: maybe\n"), [],
         "operator.yaml:1: auto-data-loading must be true or false"),
        (lambda p: _package(p, spec=GOOD_SPEC), ["n=many"], "mixin 'n': expected an integer"),
        (lambda p: _package(p, spec=GOOD_SPEC), ["mode=c"], "mixin 'mode': 'c' is not one of"),
        (lambda p: _package(p, spec=GOOD_SPEC), ['opts="{bad"'], "mixin 'opts': cannot convert"),
        (lambda p: _package(p, spec=GOOD_SPEC), ["nn=3"], "did you mean 'n'"),
    ],
)  # fmt: skip
def test_malformed_packages_and_values_are_one_line_exit_2_nothing_written(
    make, mixin, message, tmp_path
):
    package = make(tmp_path)
    data = _jsonl_data(tmp_path / "in", files=1)
    out, logs = tmp_path / "out", tmp_path / "logs"
    proc = run_dispatch(
        str(package), "--log-dir", str(logs), "--mixin", f"input={data}", f"output={out}",
        *mixin, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("dispatch: error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists() and not logs.exists()


def test_declared_types_are_placeholders_listed_by_help_and_reach_args(tmp_path):
    code = (
        "import json, pandas as pd\n"
        "class Process:\n"
        "    def __init__(self, args):\n"
        "        self.seen = {k: args[k] for k in ('n', 'mode', 'opts')}\n"
        "        self.seen['roots'] = [args.obs_input_path, args.obs_output_path]\n"
        "    def __call__(self, df):\n"
        "        return pd.DataFrame([{'args': json.dumps(self.seen)}])\n"
    )
    package = _package(tmp_path, code=code, spec=GOOD_SPEC)
    help_text = run_dispatch(str(package), "-h", cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "n (int, default 1)" in help_text.stdout and "(one of a, b; " in help_text.stdout
    # a class's wrapped first paragraph is shown whole, not cut at its first line break
    assert "`OUT/a/b.jsonl` for a name ending with one of `keep`" in help_text.stdout
    data = _jsonl_data(tmp_path / "in", files=1)
    out = tmp_path / "out"
    proc = run_dispatch(
        str(package), "--backbone", "serial", "--log-dir", str(tmp_path / "logs"),
        "--mixin", f"input={data}", f"output={out}", "n=7", "mode=b", 'opts={"z": [1, 2]}',
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(json.loads((out / "f0.jsonl").read_text())["args"])
    assert seen == {"n": 7, "mode": "b", "opts": {"z": [1, 2]}, "roots": [str(data), str(out)]}


def test_an_empty_result_writes_an_empty_output_that_counts_as_done(tmp_path):
    code = "import pandas as pd\nclass Process:\n    def __init__(self, a): pass\n" \
           "    def __call__(self, df): return df.iloc[0:0]\n"  # fmt: skip
    package = _package(tmp_path, code=code)
    data = _jsonl_data(tmp_path / "in", files=1)
    command = [str(package), "--backbone", "serial", "--log-dir", str(tmp_path / "logs"),
               "--mixin", f"input={data}", f"output={tmp_path / 'out'}"]  # fmt: skip
    assert run_dispatch(*command, cwd=tmp_path).returncode == 0
    assert (tmp_path / "out" / "f0.jsonl").read_bytes() == b""
    assert "nothing to do" in run_dispatch(*command, cwd=tmp_path).stderr


def test_install_runs_only_when_asked_once_with_its_output_in_the_log_directory(tmp_path):
    package = _package(tmp_path)
    script = package / "program_package" / "install.sh"
    script.write_text('echo installing; echo ran >> "$COUNT_FILE"\n')
    data = _jsonl_data(tmp_path / "in", files=1)
    logs, count = tmp_path / "logs", tmp_path / "count"
    env = {"COUNT_FILE": str(count)}
    base = [str(package), "--backbone", "serial", "--log-dir", str(logs),
            "--mixin", f"input={data}"]  # fmt: skip
    first = run_dispatch(*base, f"output={tmp_path / 'a'}", env=env, cwd=tmp_path)
    assert first.returncode == 0 and not count.exists()
    assert f"{script} has not been run (--install runs it once)" in first.stderr
    second = run_dispatch(*base, f"output={tmp_path / 'b'}", "--install", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert count.read_text() == "ran\n"
    (log,) = (logs / "install").glob("*.log")
    assert log.read_text() == "installing\n"
    third = run_dispatch(*base, f"output={tmp_path / 'c'}", env=env, cwd=tmp_path)
    assert "has not been run" not in third.stderr and count.read_text() == "ran\n"


def test_a_failing_install_script_stops_before_any_work(tmp_path):
    package = _package(tmp_path)
    (package / "program_package" / "install.sh").write_text("echo no network; exit 3\n")
    data = _jsonl_data(tmp_path / "in", files=1)
    proc = run_dispatch(
        str(package), "--install", "--log-dir", str(tmp_path / "logs"),
        "--mixin", f"input={data}", f"output={tmp_path / 'out'}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and "failed with exit code 3" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_operator_log_goes_to_the_run_log_directory(tmp_path):
    data = _jsonl_data(tmp_path / "in", files=2)
    out, logs = tmp_path / "out", tmp_path / "logs"
    proc = run_dispatch(
        str(OPERATORS / "text_clean"), "--backbone", "mp", "--num-process", "2",
        "--log-dir", str(logs), "--mixin", f"input={data}", f"output={out}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (log,) = logs.glob("text_clean/*/operator.log")
    assert log.read_text().count("kept ") == 2
    assert not any("log" in name for name in _outputs(out))


def test_moxing_stand_in_works_on_local_paths(tmp_path):
    sys.path.insert(0, str(REPO / "templates" / "adapters" / "shims"))
    try:
        import moxing as mox
    finally:
        sys.path.pop(0)
    src = tmp_path / "src"
    write_file(src / "a" / "x.txt", "x")
    write_file(src / "y.txt", "y")
    mox.file.copy_parallel(str(src), str(tmp_path / "dst"))
    assert mox.file.list_directory(str(tmp_path / "dst"), recursive=True) == ["a/x.txt", "y.txt"]
    assert mox.file.exists(str(tmp_path / "dst" / "a" / "x.txt"))
    mox.file.write(str(tmp_path / "w.txt"), "hello")
    assert mox.file.read(str(tmp_path / "w.txt")) == "hello"
    assert mox.file.glob(str(tmp_path / "dst" / "**" / "*.txt"))
    mox.file.remove(str(tmp_path / "dst"), recursive=True)
    assert not mox.file.exists(str(tmp_path / "dst"))
    with pytest.raises(ValueError, match="only local paths and s3:// or obs://"):
        mox.file.exists("hdfs://cluster/x")  # s3:// and obs:// go to the store
    shutil.rmtree(src)


def test_a_package_runs_from_python(tmp_path):
    import dispatcher

    data = _jsonl_data(tmp_path / "in", files=2)
    result = dispatcher.run(
        str(OPERATORS / "text_clean"), backbone="serial", log_dir=tmp_path / "logs",
        mixin={"input": str(data), "output": str(tmp_path / "out")},
    )  # fmt: skip
    assert result.exit_code == 0 and result.counts.succeeded == 2


def _cases(step: str, gives: str, backbones: list[str]) -> list:
    """(step, gives, backbone) parameters, each skipped where its backbone is."""
    cases = []
    for name in backbones:  # `devices`: torch's --devices, as torch skipped without torch
        (b,) = backbone_params(["torch" if name == "devices" else name])
        cases.append(pytest.param(step, gives, name, marks=() if isinstance(b, str) else b.marks))
    return cases


@pytest.mark.parametrize(
    ("step", "gives", "backbone"),
    [
        *_cases("PreProcess", "none", ["serial", "torch"]),
        *_cases("Process", "none", ["serial", "mp", "torch", "devices", "ray"]),
        *_cases("PostProcess", "none", ["serial"]),
        *_cases("Process", "list", ["serial"]),
        *_cases("PostProcess", "list", ["mp", "torch", "devices"]),
    ],
)
def test_a_step_returning_no_dataframe_fails_its_file_and_a_rerun_runs_it(
    step, gives, backbone, tmp_path
):
    """A forgotten `return` is a failure naming the class, never an empty output counted done."""
    package = shutil.copytree(TASKS / "operators_modelarts_forgetful", tmp_path / "forgetful")
    data = tmp_path / "in"
    for i in range(3):
        write_file(data / f"r{i}.jsonl", json.dumps({"i": i}) + "\n")
    out, logs = tmp_path / "out", tmp_path / "logs"
    engine = {"serial": [], "mp": ["--num-process", "2"], "ray": ["--num-actors", "2"],
              "torch": ["--device", "cpu", "--num-workers", "1", "--batch-size", "2"],
              "devices": ["--devices", "cpu,cpu", "--num-workers", "1", "--batch-size", "2"]}  # fmt: skip
    backbone_name = "torch" if backbone == "devices" else backbone
    command = [str(package), "--backbone", backbone_name, *engine[backbone], "--log-dir", str(logs),
               "--mixin", f"input={data}", f"output={out}", f"gives={gives}"]  # fmt: skip
    proc = run_dispatch(*command, f"forget={step}", cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    returned = "None" if gives == "none" else "a list"
    message = f"{step} returned {returned}: return a DataFrame; an empty DataFrame drops every row"
    failing = [line for line in proc.stderr.splitlines() if message in line]
    assert len(failing) == 1 and "r1.jsonl" in failing[0], proc.stderr
    assert sorted(_outputs(out)) == ["r0.jsonl", "r2.jsonl"]  # nothing of r1, no staging
    again = run_dispatch(*command, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "r1.jsonl").read_text()) == {"i": 1}
    assert sorted(_outputs(out)) == ["r0.jsonl", "r1.jsonl", "r2.jsonl"]


def _whole_dataset_package(tmp_path: Path, name: str) -> Path:
    package = tmp_path / "packages" / name
    return shutil.copytree(TASKS / "operators_modelarts_whole", package, dirs_exist_ok=True)


def _whole_run(package: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    data = tmp_path / "in"
    data.mkdir(exist_ok=True)
    return run_dispatch(
        str(package), "--backbone", "serial", "--log-dir", str(tmp_path / "logs"), *extra,
        "--mixin", f"input={data}", f"output={tmp_path / 'out'}", cwd=tmp_path,
    )  # fmt: skip


def test_a_mode_2_marker_of_another_package_is_refused_until_force(tmp_path):
    first, second = (_whole_dataset_package(tmp_path, n) for n in ("first_op", "second_op"))
    assert _whole_run(first, tmp_path).returncode == 0
    made = _outputs(tmp_path / "out")
    assert made == {"made_by.txt": b"first_op 1"}
    refused = _whole_run(second, tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("dispatch: error: ")
    assert f"made by the operator package first_op ({first})" in refused.stderr
    assert "--force" in refused.stderr
    assert _outputs(tmp_path / "out") == made
    forced = _whole_run(second, tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert _outputs(tmp_path / "out") == {"made_by.txt": b"second_op 1"}
    again = _whole_run(second, tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    assert _whole_run(first, tmp_path).returncode == 2


def test_a_mode_2_package_rerun_with_other_parameters_gets_the_drift_note(tmp_path):
    package = _whole_dataset_package(tmp_path, "some_op")
    assert _whole_run(package, tmp_path).returncode == 0
    same = _whole_run(package, tmp_path)
    assert same.returncode == 0 and "nothing to do" in same.stderr, same.stderr
    assert "another configuration" not in same.stderr
    drift = _whole_run(package, tmp_path, "--mixin", "level=2")
    assert drift.returncode == 0, drift.stderr
    assert "nothing to do" in drift.stderr and "made with another configuration (" in drift.stderr
    assert "level" in drift.stderr and "--force remakes them" in drift.stderr
    forced = _whole_run(package, tmp_path, "--force", "--mixin", "level=2")
    assert forced.returncode == 0, forced.stderr
    assert _outputs(tmp_path / "out") == {"made_by.txt": b"some_op 2"}


def test_a_mode_2_output_root_holds_only_the_operators_files_and_drift_is_found_anywhere(tmp_path):
    """The record of what made a mode-2 root goes beside it, with the done marker: the root
    is the operator's. A rerun from another folder (another log directory) still finds it."""
    package = _whole_dataset_package(tmp_path, "some_op")
    assert _whole_run(package, tmp_path).returncode == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["made_by.txt"]
    assert (tmp_path / ".out.dispatch-run.some_op").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    drift = run_dispatch(str(package), "--backbone", "serial", "--mixin",
                         f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "level=2",
                         cwd=elsewhere)  # fmt: skip
    assert drift.returncode == 0, drift.stderr
    assert "made with another configuration (" in drift.stderr and "level" in drift.stderr


@pytest.mark.parametrize("made_by", ["some_op", "other_op"])
def test_a_mode_2_marker_in_the_first_format_is_still_read(tmp_path, made_by):
    """A marker holding only `{"package": ROOT}` (as first written) names its package."""
    package = _whole_dataset_package(tmp_path, "some_op")
    maker = _whole_dataset_package(tmp_path, made_by)
    out = tmp_path / "out"
    write_file(out / "made_by.txt", f"{made_by} 1")
    (tmp_path / ".out.modelarts-done").write_text(json.dumps({"package": str(maker)}))
    proc = _whole_run(package, tmp_path)
    if made_by == "some_op":
        assert proc.returncode == 0 and "nothing to do" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 2, proc.stderr
        assert f"made by the operator package other_op ({maker})" in proc.stderr
    assert _outputs(out) == {"made_by.txt": f"{made_by} 1".encode()}
