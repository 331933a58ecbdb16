"""The step named by `forget` gives `gives` (None, or a list) instead of a DataFrame for i == 1."""


class _Step:
    def __init__(self, args):
        self.forget, self.gives = args.forget, args.gives

    def __call__(self, df):
        if self.forget == type(self).__name__ and df["i"].iloc[0] == 1:
            return None if self.gives == "none" else df.to_dict("records")
        return df


class PreProcess(_Step):
    pass


class Process(_Step):
    pass


class PostProcess(_Step):
    pass
