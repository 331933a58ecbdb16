"""A ClearML-serving `Preprocess` collecting statistics no float holds (huge, nan, inf)."""


class Preprocess:
    def preprocess(self, body, state, collect):
        collect(
            {
                "huge": 10**400,
                "nan": float("nan"),
                "inf": float("inf"),
                "big": 1e308,
                "ok": body["n"],
            }
        )
        return body["n"]

    def postprocess(self, data, state, collect):
        return {"n": data}
