"""An aiges `Wrapper` echoing what it gets: string params, body nodes, the string config;
wrapperInit fails with the code in `config.fail`; wrapperFini (no self) marks FINI_MARK."""

import json
import os

from aiges.dto import DataListCls, Response, ResponseData
from aiges.sdk import IntegerParamField, StringBodyField, StringParamField, WrapperBase


class UserRequest:
    p1 = StringParamField(key="lang", value="en")
    p2 = IntegerParamField(key="level", value=3)
    body = StringBodyField(key="text", value=b"")


class Wrapper(WrapperBase):
    requestCls = UserRequest()

    @classmethod
    def wrapperInit(cls, config: {}) -> int:
        cls.config_seen = config
        return int(config.get("fail", "0"))

    def wrapperOnceExec(cls, params: {}, reqData: DataListCls) -> Response:
        r = Response()
        d = ResponseData()
        d.setData(
            json.dumps(
                {
                    "params": params,
                    "nodes": [
                        [n.key, n.data.decode(), n.len, n.type, n.status] for n in reqData.list
                    ],
                    "config": cls.config_seen,
                }
            ).encode()
        )
        d.key = "echo"
        r.list = [d]
        return r

    def wrapperError(cls, ret: int) -> str:
        return {7: "the model file is missing"}.get(ret, "")

    def wrapperFini() -> int:
        with open(os.environ["FINI_MARK"], "a") as fh:
            fh.write("fini\n")
        return 0
