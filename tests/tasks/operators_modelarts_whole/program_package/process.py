"""A whole-dataset (mode 2) step: writes which package made the output root, at which level."""

import os

# The package is named by its folder (the tests copy this one under several names).
PACKAGE = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Process:
    def __init__(self, args):
        self.args = args

    def __call__(self, df):
        os.makedirs(self.args.obs_output_path, exist_ok=True)
        with open(os.path.join(self.args.obs_output_path, "made_by.txt"), "w") as fh:
            fh.write(f"{PACKAGE} {self.args.level}")
