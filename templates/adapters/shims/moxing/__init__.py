"""A minimal `moxing` over local paths: `mox.file` as mode-2 operators use it to stage data.

Only the functions operator code calls; paths are local (an `obs://` path is refused).
"""

from moxing import file

__all__ = ["file"]
