"""Mode 1: clean a text column, one JSONL file per call (a DataFrame of its rows)."""

import re

import ma_utils as utils
import pandas as pd

logger = utils.FileLogger.get_logger()
SPACES = re.compile(r"\s+")


class PreProcess:
    def __init__(self, args):
        self.field = args["field"]
        self.replace = dict(args.replace)

    def __call__(self, input: pd.DataFrame) -> pd.DataFrame:
        if self.field not in input.columns:
            return input
        text = input[self.field].fillna("").astype(str)
        for old, new in self.replace.items():
            text = text.str.replace(old, new, regex=False)
        return input.assign(**{self.field: text})


class Process:
    def __init__(self, args):
        self.field = args.field
        self.case = args["case"]

    def __call__(self, input: pd.DataFrame) -> pd.DataFrame:
        if self.field not in input.columns:
            return input
        text = input[self.field].map(lambda s: SPACES.sub(" ", s).strip())
        if self.case == "lower":
            text = text.str.lower()
        elif self.case == "upper":
            text = text.str.upper()
        return input.assign(**{self.field: text})


class PostProcess:
    def __init__(self, args):
        self.field = args["field"]
        self.min_chars = args["min_chars"]

    def __call__(self, input: pd.DataFrame) -> pd.DataFrame:
        if self.field not in input.columns:
            return input
        kept = input[input[self.field].str.len() >= self.min_chars]
        logger.info("kept %d of %d rows", len(kept), len(input))
        return kept.reset_index(drop=True)
