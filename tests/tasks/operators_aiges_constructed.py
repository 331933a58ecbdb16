"""An aiges `Wrapper` that gives its ResponseData's key and data to the constructor."""

from aiges.dto import DataListCls, Response, ResponseData
from aiges.sdk import StringBodyField, WrapperBase


class UserRequest:
    body = StringBodyField(key="text", value=b"")


class Wrapper(WrapperBase):
    requestCls = UserRequest()

    def wrapperInit(cls, config: {}) -> int:
        return 0

    def wrapperOnceExec(cls, params: {}, reqData: DataListCls) -> Response:
        text = reqData.get("text").data.decode()
        r = Response()
        d = ResponseData(key="echo", data=text.encode())
        r.list = [d]
        return r
