"""Each step records the process and thread it ran in, and where its class was built."""

import os
import threading


def _where():
    return f"{os.getpid()}:{threading.current_thread().name}"


class PreProcess:
    def __init__(self, args):
        self.built = _where()

    def __call__(self, df):
        return df.assign(pre=_where(), pre_built=self.built)


class Process:
    def __init__(self, args):
        self.tag = args.tag if "tag" in args else "none"

    def __call__(self, df):
        return df.assign(proc=_where(), tag=self.tag)


class PostProcess:
    def __init__(self, args):
        pass

    def __call__(self, df):
        return df.assign(post=_where())
