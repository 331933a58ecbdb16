"""aiges `Wrapper` classes run unchanged over JSONL rows (a row per item, a folder per row)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, backbone_params, failures, run_dispatch, task_file, tree, write_file

EXAMPLE = REPO / "tasks" / "operators" / "aiges_example"
REQUESTS = EXAMPLE / "data" / "requests.jsonl"


def _expected(row: dict, greeting: str) -> dict[str, bytes]:
    """What the example's response holds for a row, computed here from the row itself."""
    text = row["text"].upper() if row["mode"] == "upper" else row["text"].lower()
    image = (REQUESTS.parent / row["image"]).read_bytes()
    summary = {
        "chars": len(row["text"]),
        "image_bytes": len(image),
        "image_md5": hashlib.md5(image).hexdigest(),
    }
    files = {"text": f"{greeting} {text}".encode(), "summary": json.dumps(summary).encode()}
    manifest = "".join(
        json.dumps({"key": k, "file": k, "len": len(v), "type": 0, "status": 3}) + "\n"
        for k, v in files.items()
    )
    files["manifest.jsonl"] = manifest.encode()
    return {f"{row['id']}/{name}": data for name, data in files.items()}


def _reference(greeting: str = "hello") -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for line in REQUESTS.read_text().splitlines():
        out.update(_expected(json.loads(line), greeting))
    return out


def _args(out: Path, logs: Path, *more: str, input: Path = REQUESTS) -> list[str]:
    return [
        str(EXAMPLE / "wrapper.py"),
        "Wrapper",
        "--log-dir",
        str(logs),
        *more,
        "--mixin",
        f"input={input}",
        f"output={out}",
        "config.greeting=hello",
    ]


BACKBONES = {
    "serial": [],
    "mp": ["--num-process", "2"],
    "torch": ["--device", "cpu", "--num-workers", "1"],
    "ray": ["--num-actors", "2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("backbone", backbone_params(BACKBONES))
def test_the_example_writes_a_folder_per_row_and_reruns_nothing(tmp_path, backbone):
    out, logs = tmp_path / "out", tmp_path / "logs"
    args = _args(out, logs, "--backbone", backbone, *BACKBONES[backbone])
    proc = run_dispatch(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tree(out) == _reference()
    again = run_dispatch(*args, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr


def test_the_class_config_is_the_default_of_wrapper_init(tmp_path):
    out, logs = tmp_path / "out", tmp_path / "logs"
    args = [a for a in _args(out, logs) if a != "config.greeting=hello"]
    proc = run_dispatch(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tree(out) == _reference("hi")


@pytest.mark.slow
def test_shards_of_the_example_make_one_full_run(tmp_path):
    full, logs = tmp_path / "full", tmp_path / "logs"
    assert run_dispatch(*_args(full, logs), cwd=tmp_path).returncode == 0
    made = []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        proc = run_dispatch(*_args(out, logs, "--shard", f"{i}/2"), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        made.append(tree(out))
    assert made[0] and made[1] and not set(made[0]) & set(made[1])
    assert {**made[0], **made[1]} == tree(full) == _reference()


def test_an_error_code_fails_the_item_with_wrapper_error_message(tmp_path):
    rows = tmp_path / "in" / "rows.jsonl"
    write_file(
        rows,
        "\n".join(
            json.dumps(
                {
                    "id": f"r{i}",
                    "mode": mode,
                    "text": "Ab",
                    "image": str(EXAMPLE / "data" / "red.png"),
                }
            )
            for i, mode in enumerate(["upper", "shout", "lower"])
        )
        + "\n",
    )
    out, logs = tmp_path / "out", tmp_path / "logs"
    proc = run_dispatch(*_args(out, logs, "--backbone", "serial", input=rows), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert sorted({k.split("/")[0] for k in tree(out)}) == ["r0", "r2"]
    failed = failures(logs)
    assert [f["key"] for f in failed] == ["r1"]
    assert (
        failed[0]["error"]
        == "WrapperError: wrapperOnceExec returned error code 10001: unknown mode: use upper or lower"
    )
    assert failed[0]["item"]["source"] == f"{rows}:2"


def _variant_rows(tmp_path: Path) -> Path:
    rows = tmp_path / "in" / "rows.jsonl"
    write_file(
        rows,
        '{"text": "one", "level": 5, "flag": true}\n\n{"id": 42, "text": {"k": 1}}\n',
    )
    return rows


def test_wrapper_variants_get_string_params_body_nodes_and_string_config(tmp_path):
    op = task_file("operators_aiges_variants")
    rows, out = _variant_rows(tmp_path), tmp_path / "out"
    mark = tmp_path / "fini.txt"
    proc = run_dispatch(
        op,
        "Wrapper",
        "--backbone",
        "serial",
        "--log-dir",
        tmp_path / "logs",
        "--mixin",
        f"input={rows}",
        f"output={out}",
        "config.threads=4",
        "config.name=x",
        cwd=tmp_path,
        env={"FINI_MARK": str(mark)},
    )
    assert proc.returncode == 0, proc.stderr
    # a row without an id is keyed by its file and line
    assert sorted(tree(out)) == [
        "42/echo",
        "42/manifest.jsonl",
        "rows.jsonl:1/echo",
        "rows.jsonl:1/manifest.jsonl",
    ]
    first = json.loads((out / "rows.jsonl:1" / "echo").read_text())
    assert first["params"] == {"level": "5", "flag": "true", "lang": "en"}
    assert first["nodes"] == [["text", "one", 3, 0, 3]]
    assert first["config"] == {"threads": "4", "name": "x"}
    second = json.loads((out / "42" / "echo").read_text())
    assert second["params"] == {"lang": "en", "level": "3"}
    assert second["nodes"] == [["text", '{"k": 1}', 8, 0, 3]]
    assert mark.read_text() == "fini\n"  # wrapperFini() without self, once


def test_a_non_zero_wrapper_init_fails_the_setup_naming_the_code(tmp_path):
    op = task_file("operators_aiges_variants")
    rows, out = _variant_rows(tmp_path), tmp_path / "out"
    proc = run_dispatch(
        op,
        "Wrapper",
        "--backbone",
        "serial",
        "--log-dir",
        tmp_path / "logs",
        "--mixin",
        f"input={rows}",
        f"output={out}",
        "config.fail=7",
        cwd=tmp_path,
        env={"FINI_MARK": str(tmp_path / "fini.txt")},
    )
    assert proc.returncode == 1
    assert "wrapperInit returned 7: the model file is missing" in proc.stderr
    assert not out.exists() or tree(out) == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n',
            "key 'a' (field 'id') is also the key of",
        ),
        ('{"id": "a", "text": "x"}\n{"id": oops}\n', "rows.jsonl:2: not valid JSON"),
        ('["not", "an", "object"]\n', "rows.jsonl:1: a row must be a JSON object, got list"),
    ],
)
def test_unreadable_or_ambiguous_rows_are_refused_before_any_work(tmp_path, content, message):
    op = task_file("operators_aiges_variants")
    rows = write_file(tmp_path / "in" / "rows.jsonl", content)
    proc = run_dispatch(
        op, "Wrapper", "--mixin", f"input={rows}", f"output={tmp_path / 'out'}", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("dispatch: error: ") and message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_folder_of_jsonl_files_is_every_row_of_each(tmp_path):
    data = tmp_path / "in"
    write_file(data / "a.jsonl", '{"id": "x1", "text": "a"}\n')
    write_file(data / "deep" / "b.jsonl", '{"text": "b"}\n{"id": "x2", "text": "c"}\n')
    op = task_file("operators_aiges_variants")
    out = tmp_path / "out"
    proc = run_dispatch(
        op,
        "Wrapper",
        "--log-dir",
        tmp_path / "logs",
        "--mixin",
        f"input={data}",
        f"output={out}",
        cwd=tmp_path,
        env={"FINI_MARK": str(tmp_path / "fini.txt")},
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted({k.rsplit("/", 1)[0] for k in tree(out)}) == ["deep/b.jsonl:1", "x1", "x2"]


def test_the_stand_in_sdk_is_served_only_to_task_files():
    probe = (
        "import templates\n"
        "try:\n"
        "    import aiges\n"
        "except ModuleNotFoundError:\n"
        "    print('not importable')\n"
        "else:\n"
        "    print('imported', aiges.__file__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 0, proc.stderr
    try:
        import importlib.util

        real = importlib.util.find_spec("aiges") is not None
    except ValueError:
        real = False
    assert proc.stdout.strip() == "not importable" or real


@pytest.mark.slow
def test_a_run_killed_mid_item_leaves_no_output_that_counts_as_done(tmp_path):
    op = task_file("operators_aiges_killer")
    out, logs = tmp_path / "out", tmp_path / "logs"
    args = [
        op,
        "Wrapper",
        "--backbone",
        "serial",
        "--log-dir",
        logs,
        "--mixin",
        f"input={REQUESTS}",
        f"output={out}",
        "config.greeting=hello",
    ]
    env = dict(os.environ, KILL_AT="Shard Dispatch")  # the third row, req-02
    env.pop("SLURM_ARRAY_TASK_ID", None)
    killed = subprocess.run(
        [sys.executable, "-m", "dispatcher", *map(str, args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    reference = _reference()
    final = {k: v for k, v in tree(out).items() if ".dispatch-" not in k}
    assert final == {k: v for k, v in reference.items() if k.split("/")[0] in ("req-00", "req-01")}
    again = run_dispatch(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "ran 4" in again.stderr, again.stderr
    assert tree(out) == reference


ENGINES = {**BACKBONES, "devices": ["--devices", "cpu,cpu", "--num-workers", "1"]}
"""Every engine: `devices` is torch's --devices (skipped with torch)."""


def _engines() -> list:
    params = []
    for name in ENGINES:  # `devices` is marked as torch is
        (param,) = backbone_params(["torch" if name == "devices" else name])
        params.append(name if isinstance(param, str) else pytest.param(name, marks=param.marks))
    return params


@pytest.mark.parametrize("backbone", _engines())
def test_response_data_of_none_fails_its_row_and_a_rerun_runs_it(tmp_path, backbone):
    """`data` left None is a failure naming the key, never an empty file counted done."""
    op = task_file("operators_aiges_forgetful")
    rows = tmp_path / "in" / "rows.jsonl"
    texts = ["a", "forget", "c"]
    write_file(
        rows, "".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    out, logs = tmp_path / "out", tmp_path / "logs"
    engine = "torch" if backbone == "devices" else backbone
    args = [op, "Wrapper", "--backbone", engine, *ENGINES[backbone], "--log-dir", logs,
            "--mixin", f"input={rows}", f"output={out}"]  # fmt: skip
    proc = run_dispatch(*args, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    message = "ResponseData 'echo' has data None: set bytes or text with setData"
    failing = [line for line in proc.stderr.splitlines() if message in line]
    assert len(failing) == 1 and "r1" in failing[0], proc.stderr
    assert sorted({k.split("/")[0] for k in tree(out)}) == ["r0", "r2"]
    write_file(rows, rows.read_text().replace('"forget"', '"b"'))
    again = run_dispatch(*args, cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and "ran 1 " in again.stderr, again.stderr
    assert (out / "r1" / "echo").read_bytes() == b"b"


@pytest.fixture(scope="module")
def real_sdk_python(tmp_path_factory) -> str:
    """A throwaway venv that sees this environment's packages plus the real aiges 0.16.0.

    `import aiges.sdk` needs flask_restx and jsonref beyond what the project installs; its
    other requirements (gradio, grpc) serve its own servers, which no wrapper run touches.
    Nothing is installed into the environment the tests run in."""
    installed_here = _installed_here()
    venv = tmp_path_factory.mktemp("aiges-venv") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300
    )
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for args in (["--no-deps", "aiges==0.16.0"], ["flask_restx", "jsonref"]):
        done = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(
                f"cannot install {args[-1]} from the package registry: {done.stderr[-300:]}"
            )
    probe = "import aiges.dto, aiges.sdk; print(aiges.dto.__file__)"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    assert found.returncode == 0 and str(venv) in found.stdout, found.stderr
    assert _installed_here() == installed_here  # the venv's installs stayed in the venv
    return python


def _installed_here() -> str:
    """Which of the real SDK's packages this environment's interpreter finds."""
    probe = "import importlib.util as u; print([bool(u.find_spec(n)) for n in ('aiges', 'flask_restx', 'jsonref')])"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    ).stdout


def _run_with(python: str, *args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SLURM_ARRAY_TASK_ID"}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [python, "-m", "dispatcher", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


SETTER_NOTE = "dispatch: note: the installed aiges SDK's ResponseData has no setter for"


@pytest.mark.slow
# Not ray: its actors run the cluster's Python, not the one with the real SDK.
@pytest.mark.parametrize("backbone", backbone_params(["serial", "mp", "torch"]))
def test_a_wrapper_written_like_the_aiges_doc_runs_unchanged_with_the_real_sdk(
    tmp_path, real_sdk_python, backbone
):
    """`l.data = ...; l.len = ...` (the doc's style; the real 0.16.0 has no such setters):
    the run makes what the stand-in makes and says once which call the server needs."""
    out, logs = tmp_path / "out", tmp_path / "logs"
    args = _args(out, logs, "--backbone", backbone, *BACKBONES[backbone])
    proc = _run_with(real_sdk_python, *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert tree(out) == _reference()
    notes = [line for line in proc.stderr.splitlines() if line.startswith(SETTER_NOTE)]
    assert len(notes) == 1, proc.stderr
    assert "setData" in notes[0] and f"{EXAMPLE / 'wrapper.py'}:" in notes[0], notes
    stand_in = run_dispatch(*_args(tmp_path / "out2", logs, "--backbone", "serial"), cwd=tmp_path)
    assert stand_in.returncode == 0 and tree(tmp_path / "out2") == _reference()
    assert "setData" not in stand_in.stderr  # the stand-in takes both styles: nothing to say


@pytest.mark.slow
def test_a_wrapper_calling_set_data_runs_with_the_real_sdk_without_a_note(
    tmp_path, real_sdk_python
):
    op = task_file("operators_aiges_variants")
    rows, out = _variant_rows(tmp_path), tmp_path / "out"
    proc = _run_with(
        real_sdk_python, op, "Wrapper", "--backbone", "serial", "--log-dir", tmp_path / "logs",
        "--mixin", f"input={rows}", f"output={out}", "config.name=x", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "setData" not in proc.stderr
    first = json.loads((out / "rows.jsonl:1" / "echo").read_text())
    assert first["nodes"] == [["text", "one", 3, 0, 3]] and first["config"] == {"name": "x"}


@pytest.mark.slow
@pytest.mark.parametrize("code", ["forgetful", "constructed"])
def test_response_data_runs_as_with_the_stand_in_under_the_real_sdk(
    tmp_path, real_sdk_python, code
):
    """The same rows give the same outputs and failures with either SDK: a None `data`
    fails its row; data given to the constructor (dropped by 0.16.0) is kept, with a note."""
    op = task_file(f"operators_aiges_{code}")
    rows = tmp_path / "in" / "rows.jsonl"
    write_file(rows, "".join(json.dumps({"id": f"r{i}", "text": t}) + "\n"
                             for i, t in enumerate(["a", "forget", "c"])))  # fmt: skip
    made = {}
    for sdk, python in (("stand-in", sys.executable), ("real", real_sdk_python)):
        out = tmp_path / sdk
        proc = _run_with(python, op, "Wrapper", "--backbone", "serial", "--log-dir",
                         tmp_path / "logs", "--mixin", f"input={rows}", f"output={out}", cwd=tmp_path)  # fmt: skip
        made[sdk] = (proc.returncode, tree(out))
        notes = [line for line in proc.stderr.splitlines() if "call setData" in line]
        if sdk == "real" and code == "constructed":
            assert len(notes) == 1 and f"{op}:" in notes[0], proc.stderr
            assert "drops the data given to it" in notes[0]
        elif sdk == "real":
            assert len(notes) == 1 and "has no setter for `data`" in notes[0], proc.stderr
        else:
            assert not notes, proc.stderr
        if code == "forgetful":
            assert "ResponseData 'echo' has data None" in proc.stderr, proc.stderr
    assert made["real"] == made["stand-in"]
    assert made["real"][0] == (1 if code == "forgetful" else 0)
    assert (tmp_path / "real" / "r2" / "echo").read_bytes() == b"c"
