"""`log`, the logger wrapper files use (`from aiges.utils.log import log`)."""

import logging

log = logging.getLogger("aiges")


def getLogger(fmt=None, level=logging.DEBUG, name="root"):  # noqa: N802 (the SDK's name)
    return log
