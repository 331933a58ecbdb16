"""A minimal `moxing`: `mox.file` as operators use it to stage data, over local paths and
`obs://` / `s3://` URLs (served by the dispatcher's store client).

Only the functions operator code calls; any other scheme (`hdfs://`) is refused.
"""

from moxing import file

__all__ = ["file"]
