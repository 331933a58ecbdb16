"""A ClearML-serving `Preprocess` that calls another model: not available in batch mode."""


class Preprocess:
    def process(self, data, state, collect):
        return self.send_request("other_model", data=data)
