"""An aiges wrapper, unchanged, run over the rows of JSONL files.

    dispatch tasks/operators/aiges_example/wrapper.py Wrapper \
        --mixin input=tasks/operators/aiges_example/data/requests.jsonl output=/tmp/aiges-out \
        config.greeting=hello

Each row (`{"id": ..., "mode": "upper"|"lower", "text": ..., "image": "pixel.png"}`)
is one request: `mode` is a parameter, `text` a string body field and `image` a path
body field (its file is read as bytes). The response holds the converted text and a JSON
summary; `mode=shout` answers with error code 10001.
"""

import hashlib
import json

try:
    from aiges_embed import DataListCls, DataListNode, Response, ResponseData  # noqa: F401
except ImportError:
    from aiges.dto import DataListCls, DataListNode, Response, ResponseData  # noqa: F401

from aiges.core.types import *  # noqa: F403
from aiges.sdk import ImageBodyField, StringBodyField, StringParamField, WrapperBase
from aiges.utils.log import log


class UserRequest:
    params1 = StringParamField(key="mode", enums=["upper", "lower"], value="upper")
    input1 = StringBodyField(key="text", value=b"")
    input2 = ImageBodyField(key="image", path="")


class UserResponse:
    accept1 = StringBodyField(key="text")
    accept2 = StringBodyField(key="summary")


class Wrapper(WrapperBase):
    serviceId = "text_case"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()
    config = {"greeting": "hi"}

    @classmethod
    def wrapperInit(cls, config: {}) -> int:
        cls.greeting = config["greeting"]
        log.info("initialised with %s", config)
        return 0

    def wrapperOnceExec(self, params: {}, reqData: DataListCls) -> Response:
        res = Response()
        mode = params.get("mode", "upper")
        if mode not in ("upper", "lower"):
            return res.response_err(10001)
        text = reqData.get("text").data.decode()
        image = reqData.get("image")
        converted = text.upper() if mode == "upper" else text.lower()
        out = ResponseData()
        out.key, out.type, out.status = "text", DataText, Once  # noqa: F405
        out.data = f"{self.greeting} {converted}"
        out.len = len(out.data.encode())
        summary = ResponseData()
        summary.key, summary.type, summary.status = "summary", DataText, Once  # noqa: F405
        summary.data = json.dumps(
            {
                "chars": len(text),
                "image_bytes": image.len,
                "image_md5": hashlib.md5(image.data).hexdigest(),
            }
        ).encode()
        summary.len = len(summary.data)
        res.list = [out, summary]
        return res

    def wrapperError(cls, ret: int) -> str:
        if ret == 10001:
            return "unknown mode: use upper or lower"
        return f"User Defined Error: {ret}"

    def wrapperFini() -> int:
        return 0
