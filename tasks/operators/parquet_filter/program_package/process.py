"""Mode 1 over Parquet: the file's rows plus the predefined file_path and file_name columns."""

import pandas as pd


class Process:
    def __init__(self, args):
        self.threshold = args["threshold"]
        self.keep_paths = args["keep_paths"]

    def __call__(self, input: pd.DataFrame) -> pd.DataFrame:
        kept = input[input["score"] >= self.threshold].copy()
        kept["rank"] = kept["score"].rank(ascending=False, method="first").astype("int64")
        if not self.keep_paths:
            kept = kept.drop(columns=["file_path", "file_name"])
        return kept.reset_index(drop=True)
