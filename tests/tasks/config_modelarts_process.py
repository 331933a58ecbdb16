"""A ModelArts operator's `program_package/process.py` (the test copies it into a package):
tags every row with its `tag` parameter."""


class Process:
    def __init__(self, args):
        self.tag = args["tag"]

    def __call__(self, df):
        return df.assign(tag=self.tag)
