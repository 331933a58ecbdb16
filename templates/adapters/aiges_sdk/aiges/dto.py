"""Request and response objects, shaped as `aiges.dto` defines them."""

import json

from .core.types import DataAudio, DataImage, DataText, DataVideo, Once


class DataListNode:
    def __init__(self):
        self.key = ""
        self.data = b""
        self.status = Once
        self.len = 0
        self.type = DataText


class DataListCls:
    def __init__(self):
        self.list: list[DataListNode] = []

    def get(self, key):
        for d in self.list:
            if d.key == key:
                return d
        return None


class ResponseData:
    """One output field. `data` and `len` may be set directly (as wrapper files do) or with
    `setData`, which keeps `len` in step."""

    def __init__(self, key="", data=b"", length=0, type=DataText, status=Once):
        self.key = key
        self.type = type
        self.status = status
        self.data = data
        self.len = length or len(data)

    def setDataType(self, t):  # noqa: N802 (the SDK's name)
        if t not in (DataText, DataAudio, DataImage, DataVideo):
            raise Exception("Please specify the correct data type...")
        self.type = t

    def setData(self, d):  # noqa: N802 (the SDK's name)
        self.data = d
        self.len = len(d)

    def toJSON(self):  # noqa: N802 (the SDK's name)
        return json.dumps(self, default=lambda o: o.__dict__, sort_keys=True, indent=4)


class Response:
    def __init__(self):
        self.list: list[ResponseData] = [ResponseData()]
        self.error_code = 0

    def response_err(self, error_code):
        self.error_code = error_code
        return self

    def toJSON(self):  # noqa: N802 (the SDK's name)
        return json.dumps(self, default=lambda o: o.__dict__, sort_keys=True, indent=4)


class SessionCreateResponse:
    def __init__(self):
        self.handle = ""
        self.error_code = 0
