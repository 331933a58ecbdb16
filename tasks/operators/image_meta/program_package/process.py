"""Mode 1 over raw files: each image arrives as a one-row DataFrame (file_path, file_name)."""

import pandas as pd
from PIL import Image


class Process:
    def __init__(self, args):
        self.thumb = args.thumb_size

    def __call__(self, input: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for path, name in zip(input["file_path"], input["file_name"], strict=True):
            with Image.open(path) as image:
                row = {
                    "file_name": name,
                    "width": image.width,
                    "height": image.height,
                    "mode": image.mode,
                    "format": image.format,
                }
                if self.thumb:
                    image.thumbnail((self.thumb, self.thumb))
                    row["thumb"] = list(image.size)
            rows.append(row)
        return pd.DataFrame(rows)
