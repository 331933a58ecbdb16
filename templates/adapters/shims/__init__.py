"""Stand-ins for platform modules that ModelArts operator code imports (`ma_utils`,
`moxing`), on `sys.path` while an operator package is loaded and run.

Not packages of this distribution: this folder is put on the path by the ModelArts
adapter so that `import ma_utils` and `import moxing as mox` work unchanged on local data.
The PyPI projects of those names are unrelated.
"""

import os

PATH = os.path.dirname(os.path.abspath(__file__))
