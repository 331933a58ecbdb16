"""An aiges wrapper that answers each request with the `config` it was initialised with."""

import json

from aiges.dto import DataListCls, Response, ResponseData
from aiges.sdk import StringBodyField, WrapperBase


class UserRequest:
    body = StringBodyField(key="text", value=b"")


class Wrapper(WrapperBase):
    requestCls = UserRequest()

    @classmethod
    def wrapperInit(cls, config: {}) -> int:
        cls.config_seen = config
        return 0

    def wrapperOnceExec(cls, params: {}, reqData: DataListCls) -> Response:
        r = Response()
        d = ResponseData()
        d.setData(json.dumps(cls.config_seen).encode())
        d.key = "config"
        r.list = [d]
        return r
