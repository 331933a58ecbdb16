"""Template tasks whose declared modes hold a bad value: each run is refused, exit 2."""

from dispatcher import Task
from templates import (
    InputByDepth,
    InputByExtensions,
    InputByGlob,
    InputFromJsonl,
    OutputSubfolder,
    OutputWithExtension,
    cpu_task,
)


class _Bad(Task):
    def process(self, input, output, **item):
        pass


@cpu_task(input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputWithExtension(""))
class EmptyExtension(_Bad):
    pass


@cpu_task(input_mode=InputByExtensions(exts=[]), output_mode=OutputWithExtension(".j"))
class NoExtensions(_Bad):
    pass


@cpu_task(input_mode=InputByGlob(pattern="../*"), output_mode=OutputWithExtension(".j"))
class GlobAboveTheRoot(_Bad):
    pass


@cpu_task(input_mode=InputByDepth(depth=0), output_mode=OutputWithExtension(".j"))
class DepthZero(_Bad):
    pass


@cpu_task(input_mode=InputByDepth(kind="pipe"), output_mode=OutputWithExtension(".j"))
class UnknownKind(_Bad):
    pass


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputSubfolder(files={"x": "../x"})
)
class FileAboveTheFolder(_Bad):
    pass


@cpu_task(
    input_mode=InputByExtensions(exts=[".txt"]), output_mode=OutputSubfolder(files={"a-b": "x"})
)
class NameNotAnIdentifier(_Bad):
    pass


@cpu_task(input_mode=InputFromJsonl(path="nope.jsonl"), output_mode=OutputWithExtension(".j"))
class MissingList(_Bad):
    pass
