"""Every configuration error is found before any work: typed text, signatures, backbone fit,
missing packages, SLURM arrays without a shard. Each case runs the real command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import REPO, run_dispatch, write_file

ECHO_TASK = """
    import json, os
    from dispatcher import Placeholder, Task, atomic_write

    class Echo(Task):
        mixin = {
            "out": Placeholder(str),
            "source": Placeholder(str),
            "tags": Placeholder(list[str], default=[]),
            "min_chars": Placeholder(int, default=1),
            "note": Placeholder(str | None, default=None),
        }

        def generate_tasks(self):
            return [{"i": 0}]

        def process(self, i):
            with atomic_write(os.path.join(self.mixin.out, "r.json")) as tmp, open(tmp, "w") as fh:
                json.dump({k: self.mixin[k] for k in ("source", "tags", "min_chars", "note")}, fh)
"""


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("dispatch: error")]


def _echo(tmp_path: Path, *args: str):
    task = write_file(tmp_path / "echo.py", ECHO_TASK)
    out = tmp_path / "out"
    proc = run_dispatch(
        task, "Echo", "--backbone", "serial", "--mixin", f"out={out}", *args, cwd=tmp_path
    )
    result = json.loads((out / "r.json").read_text()) if (out / "r.json").exists() else None
    return proc, result


# --- placeholders keep what was typed ----------------------------------------------------


@pytest.mark.parametrize("text", ["0123", "007", "0x10", "1e3", "yes", "12:30", ".inf", "True"])
def test_a_str_placeholder_keeps_the_typed_text_on_the_command_line(tmp_path, text):
    proc, result = _echo(tmp_path, "--mixin", f"source={text}", f"tags=[{text}, b]")
    assert proc.returncode == 0, proc.stderr
    assert result["source"] == text and result["tags"] == [text, "b"]


def test_a_str_placeholder_keeps_the_typed_text_in_yaml_files(tmp_path):
    cfg = write_file(tmp_path / "cfg.yaml", "mixin:\n  source: 0123\n  tags: [007, 0x10]\n")
    proc, result = _echo(tmp_path, "--cfg", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert result["source"] == "0123" and result["tags"] == ["007", "0x10"]
    mixin_cfg = write_file(tmp_path / "m.yaml", "source: 1e3\ntags: ['007', yes]\n")
    proc, result = _echo(tmp_path, "--mixin-cfg", str(mixin_cfg))
    assert proc.returncode == 0, proc.stderr
    assert result["source"] == "1e3" and result["tags"] == ["007", "yes"]


def test_quoted_and_interpolated_values_stay_strings(tmp_path):
    cfg = write_file(tmp_path / "cfg.yaml", "mixin:\n  raw: 0123\n  source: ${mixin.raw}\n")
    task = write_file(
        tmp_path / "echo.py",
        ECHO_TASK.replace(
            '"out": Placeholder(str),', '"out": Placeholder(str), "raw": Placeholder(str),'
        ),
    )
    out = tmp_path / "out"
    proc = run_dispatch(
        task,
        "Echo",
        "--backbone",
        "serial",
        "--cfg",
        cfg,
        "--mixin",
        f"out={out}",
        "tags=['0123']",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "r.json").read_text())
    assert result["source"] == "0123" and result["tags"] == ["0123"]


def test_numbers_still_become_numbers_for_numeric_placeholders(tmp_path):
    proc, result = _echo(tmp_path, "--mixin", "source=a", "min_chars=0x10")
    assert proc.returncode == 0, proc.stderr
    assert result["min_chars"] == 16


@pytest.mark.parametrize(
    "item, message",
    [
        ("min_chars=", "dispatch: error: mixin 'min_chars': expected an integer, got null"),
        ("min_chars=null", "dispatch: error: mixin 'min_chars': expected an integer, got null"),
        ("source=", "dispatch: error: mixin 'source': expected a string, got null"),
    ],
)
def test_null_for_a_non_optional_placeholder_is_refused_before_work(tmp_path, item, message):
    args = [item] if item.startswith("source") else ["source=x", item]
    proc, result = _echo(tmp_path, "--mixin", *args)
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [message]
    assert (
        result is None
        and not (tmp_path / "out").exists()
        and not (tmp_path / "dispatch-logs").exists()
    )


def test_null_for_an_optional_placeholder_is_none(tmp_path):
    # On the command line a `str` takes the text as typed (`note=null` is "null"): an
    # empty value is the null there; in YAML files `null` and `~` are.
    proc, result = _echo(tmp_path, "--mixin", "source=null", "note=")
    assert proc.returncode == 0, proc.stderr
    assert result["note"] is None and result["source"] == "null"


def test_null_in_a_yaml_file_is_refused_as_well(tmp_path):
    mixin_cfg = write_file(tmp_path / "m.yaml", "source: ~\nmin_chars:\n")
    proc, result = _echo(tmp_path, "--mixin-cfg", str(mixin_cfg))
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        "dispatch: error: mixin 'source': expected a string, got null",
        "dispatch: error: mixin 'min_chars': expected an integer, got null",
    ]


# --- signatures are checked up front -----------------------------------------------------

TEMPLATE_TASK = """
    from dispatcher import Task
    from templates import InputByExtensions, OutputWithExtension, OutputSubfolder, cpu_task

    @cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode={output_mode})
    class Copy(Task):
        def process(self, {params}):
            import shutil
            given = dict(locals())
            given.update(given.pop("kwargs", {{}}))
            shutil.copyfile(given["input"], given["output"])
"""


def _template_run(
    tmp_path: Path, params: str, output_mode: str = "OutputWithExtension(ext='.out')"
):
    task = write_file(
        tmp_path / "copy_task.py", TEMPLATE_TASK.format(params=params, output_mode=output_mode)
    )
    write_file(tmp_path / "data" / "a.txt", "hello\n")
    return run_dispatch(
        task,
        "Copy",
        "--backbone",
        "serial",
        "--mixin",
        f"input={tmp_path / 'data'}",
        f"output={tmp_path / 'out'}",
        cwd=tmp_path,
    )


def test_process_that_cannot_take_the_template_output_is_refused(tmp_path):
    proc = _template_run(tmp_path, "input")
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        "dispatch: error: Copy.process() has no parameter 'output', which its template passes "
        "(it gets input, output; add the parameter or **kwargs)"
    ]
    assert not (tmp_path / "out").exists() and not (tmp_path / "dispatch-logs").exists()


def test_process_with_a_required_parameter_nothing_passes_is_refused(tmp_path):
    proc = _template_run(
        tmp_path,
        "input, output, output_text",
        output_mode="OutputSubfolder(files={'txt': 'a.txt'})",
    )
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        "dispatch: error: Copy.process() has no parameter 'output_txt', which its template passes "
        "(it gets input, output, output_txt; add the parameter or **kwargs)",
        "dispatch: error: Copy.process() requires 'output_text', which nothing passes "
        "(it gets input, output, output_txt)",
    ]


@pytest.mark.parametrize(
    "params", ["input, output", "input, output, extra=1", "input, **kwargs", "**kwargs"]
)
def test_process_signatures_that_fit_run(tmp_path, params):
    proc = _template_run(tmp_path, params)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "a.txt.out").read_text() == "hello\n"


def test_a_plain_task_item_that_process_cannot_take_is_refused_at_plan_time(tmp_path):
    task = write_file(
        tmp_path / "t.py",
        """
        import os
        from dispatcher import Task
        class T(Task):
            def generate_tasks(self):
                return [{"path": "a", "size": 1}, {"path": "b", "size": 2}]
            def process(self, path, mode):
                open(os.path.join(os.path.dirname(__file__), "ran"), "w").close()
    """,
    )
    proc = run_dispatch(task, "T", "--backbone", "serial", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        "dispatch: error: T.process() has no parameter 'size', which its items pass "
        "(it gets path, size; add the parameter or **kwargs)",
        "dispatch: error: T.process() requires 'mode', which nothing passes (it gets path, size)",
    ]
    assert not (tmp_path / "ran").exists() and not (tmp_path / "dispatch-logs").exists()


@pytest.mark.slow
def test_torch_template_load_data_and_postprocess_each_are_checked(tmp_path):
    task = write_file(
        tmp_path / "t.py",
        """
        from dispatcher import TorchTask
        from templates import InputByExtensions, OutputWithExtension, torch_task

        @torch_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(ext=".out"))
        class T(TorchTask):
            def load_data(self, path):
                return {}
            def inference(self, device, batch_size, **batch):
                return [0] * batch_size
            def postprocess_each(self, batch_idx, batch_size, input, result):
                pass
    """,
    )
    write_file(tmp_path / "data" / "a.txt", "x")
    proc = run_dispatch(
        task,
        "T",
        "--backbone",
        "torch",
        "--device",
        "cpu",
        "--mixin",
        f"input={tmp_path / 'data'}",
        f"output={tmp_path / 'out'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        "dispatch: error: T.load_data() has no parameter 'input', which its template passes "
        "(it gets input; add the parameter or **kwargs)",
        "dispatch: error: T.load_data() requires 'path', which nothing passes (it gets input)",
        "dispatch: error: T.postprocess_each() has no parameter 'output', which its template passes "
        "(it gets input, output, and the fields of load_data and inference; add the parameter or **kwargs)",
    ]


@pytest.mark.slow
def test_the_example_tasks_pass_the_signature_check(tmp_path):
    for task, cls in (("tasks/clip.py", "ClipTask"), ("tasks/image_embed.py", "ImageEmbed")):
        proc = run_dispatch(
            REPO / task,
            cls,
            "--plan",
            "--mixin",
            f"input={REPO / 'tasks/data'}",
            f"output={tmp_path / 'out'}",
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr


# --- backbone fit up front ---------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["mp"])
def test_a_torch_task_on_a_cpu_backbone_is_refused_naming_torch(tmp_path, backbone):
    proc = run_dispatch(
        REPO / "tasks/image_embed.py",
        "ImageEmbed",
        "--backbone",
        backbone,
        "--mixin",
        f"input={REPO / 'tasks/data/images'}",
        f"output={tmp_path / 'out'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        f"dispatch: error: backbone '{backbone}' cannot run ImageEmbed: it is a torch task, "
        "which computes on a device: run it with --backbone torch (or serial, to debug it "
        "in-process)"
    ]
    assert not (tmp_path / "out").exists() and not (tmp_path / "dispatch-logs").exists()


# --- missing optional dependency up front ------------------------------------------------


def _hide_modules(tmp_path: Path, *names: str) -> dict[str, str]:
    """An environment in which `names` cannot be imported (in every process it starts)."""
    site = write_file(
        tmp_path / "hide" / "sitecustomize.py",
        "import sys\n" + "".join(f"sys.modules[{n!r}] = None\n" for n in names),
    )
    return {"PYTHONPATH": os.pathsep.join([str(site.parent), os.environ.get("PYTHONPATH", "")])}


def test_clip_task_without_av_says_so_once_before_work(tmp_path):
    env = _hide_modules(tmp_path, "av")
    proc = run_dispatch(
        REPO / "tasks/clip.py",
        "ClipTask",
        "--backbone",
        "mp",
        "--mixin",
        f"input={REPO / 'tasks/data/videos'}",
        f"output={tmp_path / 'out'}",
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        "dispatch: error: ClipTask needs the module 'av', which is not installed: "
        'pip install -e ".[video]"'
    ]
    assert not (tmp_path / "out").exists() and not (tmp_path / "dispatch-logs").exists()


def test_a_task_requiring_a_missing_module_is_refused(tmp_path):
    task = write_file(
        tmp_path / "t.py",
        """
        from dispatcher import Task
        class T(Task):
            requires = {"no_such_module_for_dispatch": "extra-x", "json": "never-needed"}
            def generate_tasks(self):
                return [{"i": 0}]
            def process(self, i):
                pass
    """,
    )
    proc = run_dispatch(task, "T", "--backbone", "serial", cwd=tmp_path)
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        "dispatch: error: T needs the module 'no_such_module_for_dispatch', which is not installed: "
        'pip install -e ".[extra-x]"'
    ]


# --- SLURM arrays without a shard --------------------------------------------------------


def _wordcount(tmp_path: Path, *args: str, env: dict[str, str]):
    return run_dispatch(
        REPO / "tasks/wordcount.py",
        "WordCount",
        "--backbone",
        "serial",
        "--mixin",
        f"input={REPO / 'tasks/data/text'}",
        f"output={tmp_path / 'out'}",
        *args,
        cwd=tmp_path,
        env=env,
    )


SLURM_ENV = {
    "SLURM_ARRAY_TASK_ID": "1",
    "SLURM_ARRAY_TASK_COUNT": "2",
    "SLURM_ARRAY_TASK_MIN": "0",
    "SLURM_ARRAY_TASK_MAX": "1",
}


def test_a_slurm_array_task_without_a_shard_is_refused(tmp_path):
    proc = _wordcount(tmp_path, env=SLURM_ENV)
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        "dispatch: error: this is SLURM array task 1 but no --shard was given: every array task "
        "would process every item; add --shard auto (or --shard all to do so on purpose)"
    ]
    assert not (tmp_path / "out").exists()


def test_shard_all_in_a_slurm_array_processes_everything_on_purpose(tmp_path):
    proc = _wordcount(tmp_path, "--shard", "all", env=SLURM_ENV)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "out").rglob("*.json"))) == 3


def test_shard_auto_in_a_slurm_array_still_takes_its_shard(tmp_path):
    proc = _wordcount(tmp_path, "--shard", "auto", "--plan", env=SLURM_ENV)
    assert proc.returncode == 0, proc.stderr
    assert "hash 1/2" in proc.stdout


def test_shard_all_outside_slurm_is_every_item(tmp_path):
    proc = _wordcount(tmp_path, "--shard", "all", "--plan", env={})
    assert proc.returncode == 0, proc.stderr
    assert "in this shard:  3  (all)" in proc.stdout


def test_a_task_that_picks_its_own_part_runs_in_an_array_without_a_shard(tmp_path):
    task = write_file(
        tmp_path / "parts.py",
        """
        import shutil
        from dispatcher import Placeholder, Task
        from templates import HardShard, InputByExtensions, OutputWithExtension, cpu_task

        @cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(ext=".out"),
                  hard_shard=HardShard(shard=Placeholder(int)))
        class Parts(Task):
            def process(self, input, output):
                shutil.copyfile(input, output)
    """,
    )
    write_file(tmp_path / "data" / "1" / "a.txt", "a")
    proc = run_dispatch(
        task,
        "Parts",
        "--backbone",
        "serial",
        "--mixin",
        f"input={tmp_path}/data/{{shard}}",
        f"output={tmp_path}/out/{{shard}}",
        "hard_shard.shard=1",
        cwd=tmp_path,
        env=SLURM_ENV,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "1" / "a.txt.out").read_text() == "a"
