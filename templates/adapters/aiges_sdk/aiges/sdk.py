"""`WrapperBase` and the request field declarations, as `aiges.sdk` defines them."""

import os

from .core.types import AUDIO, IMAGE, STRING, VIDEO
from .dto import DataListCls, DataListNode, Response, ResponseData, SessionCreateResponse  # noqa: F401
from .utils.log import log  # noqa: F401

type_map = {"text": STRING, "audio": AUDIO, "image": IMAGE, "video": VIDEO}


class Field:
    def __init__(self, key, data_type):
        self.key = key
        self.data_type = data_type
        self.description = ""
        self.title = ""

    def __str__(self):
        return f"<{self.__class__.__name__}:{self.key}>"


class ParamField(Field):
    pass


class PayloadField(Field):
    pass


class JsonBodyField(PayloadField):
    def __init__(self, key, value="", need_base64=False):
        super().__init__(key, STRING)
        self.value = value
        self.need_base64 = need_base64


class StringBodyField(PayloadField):
    def __init__(
        self,
        key,
        value=b" ",
        need_base64=False,
        encoding="utf8",
        format="plain",
        compress="raw",
        status=3,
    ):
        super().__init__(key, STRING)
        self.value = value
        self.need_base64 = need_base64
        self.encoding = encoding
        self.format = format
        self.compress = compress
        self.status = status


class _PathBodyField(PayloadField):
    def __init__(self, key, data_type, path="", encoding="raw", status=3):
        super().__init__(key, data_type)
        self.path = path
        self.encoding = encoding
        self.status = status

    @property
    def test_value(self):
        if not self.path or not os.path.exists(self.path):
            return b""
        with open(self.path, "rb") as f:
            return f.read()


class AudioBodyField(_PathBodyField):
    def __init__(self, key, path="", encoding="raw", format="plain", compress="raw", status=3):
        super().__init__(key, AUDIO, path, encoding, status)
        self.format = format
        self.compress = compress


class ImageBodyField(_PathBodyField):
    def __init__(self, key, path="", need_base64=False, encoding="jpg", status=3):
        super().__init__(key, IMAGE, path, encoding, status)
        self.need_base64 = need_base64


class VideoBodyField(_PathBodyField):
    def __init__(self, key, path="", encoding="raw", status=3):
        super().__init__(key, VIDEO, path, encoding, status)


class StringParamField(ParamField):
    def __init__(
        self,
        key,
        minLength=0,
        maxLength=1024,
        enums=[],  # noqa: B006 (the SDK's signature; never mutated)
        required=False,
        value="",
        description="",
        title="",
    ):
        super().__init__(key, "string")
        self.min_length, self.max_length = minLength, maxLength
        self.enums, self.required, self.value = enums, required, value
        self.description, self.title = description, title


class NumberParamField(ParamField):
    def __init__(self, key, minimum=0, maximum=100, enums=[], required=False, value=0):  # noqa: B006
        super().__init__(key, "number")
        self.minimum, self.maximum = minimum, maximum
        self.enums, self.required, self.value = enums, required, value


class IntegerParamField(NumberParamField):
    def __init__(self, key, minimum=0, maximum=100, enums=[], required=False, value=0):  # noqa: B006
        super().__init__(key, minimum, maximum, enums, required, value)
        self.data_type = "integer"


class BooleanParamField(ParamField):
    def __init__(self, key, title="", default=False, required=False):
        super().__init__(key, "boolean")
        self.title, self.default, self.required = title, default, required


class SessionManager:
    """Sessions are for streaming; a once-per-request wrapper only constructs it."""

    def init_wrapper_config(self, config):
        self.config = config


class WrapperBase:
    config = {}
    requestCls = None  # noqa: N815 (the SDK's name)
    responseCls = None  # noqa: N815 (the SDK's name)

    def __init__(self, legacy=True, is_aipaas=True, keep_schema_default_value=True):
        self.session = SessionManager()

    def wrapperInit(cls, config) -> int:  # noqa: N802,N805 (the SDK's names)
        raise NotImplementedError(
            "Please Inplement Wrapper Class Method: wrapperInit(cls, config: {}) "
        )

    def wrapperFini(cls) -> int:  # noqa: N802,N805
        raise NotImplementedError("Please Inplement Wrapper Class Method: wrapperFini(cls) ")

    def wrapperOnceExec(cls, params, reqData, usrTag="", persId=0) -> Response:  # noqa: N802,N803,N805
        raise NotImplementedError("Please Inplement Wrapper Class Method: wrapperOnceExec")

    def wrapperError(cls, ret) -> str:  # noqa: N802,N805
        return ""
