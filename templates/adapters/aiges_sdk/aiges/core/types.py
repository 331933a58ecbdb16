"""Data types and statuses, as `aiges.core.types` defines them."""

STRING = 0
AUDIO = 1
IMAGE = 2
VIDEO = 3

DataText = 0
DataAudio = 1
DataImage = 2
DataVideo = 3

Types = {0: "text", 1: "audio", 2: "image", 3: "video"}

DataBegin = 0
DataContinue = 1
DataEnd = 2
DataOnce = 3

Status = {0: "begin", 1: "continue", 2: "end", 3: "once"}

Once = DataOnce

THREAD_MODE = "thread"
PROCESS_MODE = "process"
