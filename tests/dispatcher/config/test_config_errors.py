"""Every configuration error is found before any work: typed text, signatures, backbone fit,
missing packages, SLURM arrays without a shard. Each case runs the command line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import REPO, dispatch_here, run_dispatch, task_file, write_file


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("dispatch: error")]


def _echo(tmp_path: Path, *args: str):
    task = task_file("config_echo")
    out = tmp_path / "out"
    proc = dispatch_here(
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
    task = task_file("config_echo")
    out = tmp_path / "out"
    proc = dispatch_here(
        task,
        "EchoRaw",
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
        f"dispatch: error: {mixin_cfg}:1: mixin 'source': expected a string, got null",
        f"dispatch: error: {mixin_cfg}:2: mixin 'min_chars': expected an integer, got null",
    ]


# --- signatures are checked up front -----------------------------------------------------

PROCESS_SIGNATURES = {
    "input": ("config_process_no_output", "Copy"),
    "input, output, output_text": ("config_process_unpassed", "Copy"),
    "input, output": ("config_process_fits", "Named"),
    "input, output, extra=1": ("config_process_fits", "WithDefault"),
    "input, **kwargs": ("config_process_fits", "InputAndKwargs"),
    "**kwargs": ("config_process_fits", "OnlyKwargs"),
}
"""A template task per process() signature: (module under tests/tasks/, class)."""


def _template_run(tmp_path: Path, params: str):
    module, cls = PROCESS_SIGNATURES[params]
    write_file(tmp_path / "data" / "a.txt", "hello\n")
    return dispatch_here(
        task_file(module),
        cls,
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
    proc = _template_run(tmp_path, "input, output, output_text")
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
    task = shutil.copy(task_file("config_item_signature"), tmp_path / "t.py")
    proc = dispatch_here(task, "T", "--backbone", "serial", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        "dispatch: error: T.process() has no parameter 'size', which its items pass "
        "(it gets path, size; add the parameter or **kwargs)",
        "dispatch: error: T.process() requires 'mode', which nothing passes (it gets path, size)",
    ]
    assert not (tmp_path / "ran").exists() and not (tmp_path / "dispatch-logs").exists()


@pytest.mark.slow
def test_torch_template_load_data_and_postprocess_each_are_checked(tmp_path):
    task = task_file("config_torch_signature")
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
    task = task_file("config_requires")
    proc = dispatch_here(task, "T", "--backbone", "serial", cwd=tmp_path)
    assert proc.returncode == 2
    assert _error_lines(proc) == [
        "dispatch: error: T needs the module 'no_such_module_for_dispatch', which is not installed: "
        'pip install -e ".[extra-x]"'
    ]


# --- SLURM arrays without a shard --------------------------------------------------------


def _wordcount(tmp_path: Path, *args: str, env: dict[str, str]):
    return dispatch_here(
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
    task = task_file("config_parts")
    write_file(tmp_path / "data" / "1" / "a.txt", "a")
    proc = dispatch_here(
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


def test_a_scalar_for_a_declared_list_says_a_list_is_expected(tmp_path):
    (tmp_path / "in").mkdir()
    done = dispatch_here(task_file("cli_tasks"), "Copy", "--plan", "--mixin",
                         f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
                         "input_mode.exts=.txt")  # fmt: skip
    assert done.returncode == 2
    assert (
        "mixin 'input_mode.exts': expected a list, got '.txt' "
        "(on the command line: --mixin 'input_mode.exts=[.txt]')"
    ) in done.stderr
    listed = dispatch_here(task_file("cli_tasks"), "Copy", "--plan", "--mixin",
                           f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
                           "input_mode.exts=[.txt, .md]")  # fmt: skip
    assert listed.returncode == 0, listed.stderr


def test_errors_of_values_from_files_name_the_file_and_line(tmp_path):
    package = REPO / "tasks" / "operators" / "text_clean"
    (tmp_path / "in").mkdir()
    mixin_cfg = write_file(tmp_path / "values.yaml", f"""
        input: {tmp_path / 'in'}
        output: {tmp_path / 'out'}
        min_chars: lots
        bogus: 1
        case: shout
    """)  # fmt: skip
    done = dispatch_here(package, "--plan", "--mixin-cfg", mixin_cfg)
    assert done.returncode == 2
    assert f"{mixin_cfg}:3: mixin 'min_chars': expected an integer, got 'lots'" in done.stderr
    assert f"{mixin_cfg}:4: unknown mixin key 'bogus'" in done.stderr
    assert f"{mixin_cfg}:5: mixin 'case': 'shout' is not one of" in done.stderr
    cfg = write_file(tmp_path / "run.yaml", f"""
        mixin:
          input: {tmp_path / 'in'}
          output: {tmp_path / 'out'}
          min_chars: few
    """)  # fmt: skip
    done = dispatch_here(package, "--plan", "--cfg", cfg)
    assert f"{cfg}:4: mixin 'min_chars': expected an integer, got 'few'" in done.stderr
    # the command line's value is its own: no file named
    done = dispatch_here(package, "--plan", "--cfg", cfg, "--mixin", "min_chars=many")
    assert "error: mixin 'min_chars': expected an integer, got 'many'" in done.stderr
