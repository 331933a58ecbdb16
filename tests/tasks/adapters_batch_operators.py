"""Operators written as an operator platform writes them: callables over a batch of texts,
not Tasks; the adapter in adapters_batch_stage.py claims the ones marked `__batch_operator__`."""

import os
import signal


class Upper:
    """Not a Task: a callable over a batch of texts, as an operator platform writes them."""

    __batch_operator__ = True

    def __call__(self, texts):
        return [text.upper() for text in texts]


class Unclaimed:
    pass


class NoModel(Upper):
    model_missing = True


class Crashes(Upper):
    def __call__(self, texts):
        if "text 4" in texts:
            os.kill(os.getpid(), signal.SIGKILL)  # a segfault in a decoder, the OOM killer
        return super().__call__(texts)
