"""Template tasks for the output modes and finish checks: staged files, subfolders."""

import json
import os

from dispatcher import Placeholder, Task
from templates import (
    FinishWhenAllExist,
    FinishWhenExists,
    InputByExtensions,
    OutputSubfolder,
    OutputWithExtension,
    cpu_task,
)


@cpu_task(input_mode=InputByExtensions(exts=[".mp4"]), output_mode=OutputWithExtension(ext=".json"))
class Probe(Task):
    """Checks it writes a hidden staging file beside the final path; records its name."""

    def process(self, input, output):
        final = os.path.join(self.mixin.output, "a", "b.mp4.json")
        assert isinstance(output, str) and output.path == output
        assert output.endswith(".json") and os.path.basename(output).startswith(".")
        assert os.path.dirname(output) == os.path.dirname(final)
        assert not os.path.exists(final)
        with open(output, "w") as fh:
            json.dump({"staging": os.path.basename(output)}, fh)


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]),
    output_mode=OutputSubfolder(files={"main": "main.json", "thumb": "t/thumb.jpg"}),
)
class Partial(Task):
    """Writes its thumbnail for b.txt only."""

    def process(self, input, output, output_main, output_thumb):
        with open(output_main, "w") as fh:
            fh.write("m")
        if input.endswith("b.txt"):
            with open(output_thumb, "w") as fh:
                fh.write("t")


class _Clips(Task):
    def process(self, input, output, output_manifest, output_first):
        assert os.path.isdir(output) and os.path.dirname(output_manifest) == output
        for i in range(2):
            with open(os.path.join(output, f"clip_{i:03d}.txt"), "w") as fh:
                fh.write(f"{os.path.basename(input)} {i}")
        clips = sorted(os.listdir(output))
        with open(output_manifest, "w") as fh:
            json.dump(clips, fh)


def _clips() -> OutputSubfolder:
    return OutputSubfolder(files={"manifest": "clips.json", "first": "clip_000.txt"})


@cpu_task(
    input_mode=InputByExtensions(exts=[".mp4"]), output_mode=_clips(), finish=FinishWhenAllExist()
)
class Clip(_Clips):
    """Two clips and a manifest per video; done when every declared output exists."""


@cpu_task(
    input_mode=InputByExtensions(exts=[".mp4"]),
    output_mode=_clips(),
    finish=FinishWhenExists("manifest"),
)
class ClipDoneWithManifest(_Clips):
    pass


@cpu_task(
    input_mode=InputByExtensions(exts=[".mp4"]), output_mode=_clips(), finish=FinishWhenExists()
)
class ClipDoneWithFolder(_Clips):
    pass


@cpu_task(
    input_mode=InputByExtensions(exts=[".mp4"], hidden=Placeholder(bool, default=False)),
    output_mode=OutputSubfolder(files=Placeholder(dict[str, str], default={"m": "m.json"})),
    finish=FinishWhenExists(Placeholder(str, default="m")),
)
class Any(Task):
    """Writes each declared output's name into it."""

    def process(self, input, output, **outputs):
        for name, path in sorted(outputs.items()):
            with open(path, "w") as fh:
                fh.write(name)
