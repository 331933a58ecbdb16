"""Generate the sample videos under tasks/data/videos/ with PyAV (no system ffmpeg needed).

    python tasks/data/make_videos.py            # rewrites tasks/data/videos/
    python tasks/data/make_videos.py OUT_DIR    # writes them somewhere else

Every video is synthetic (moving shapes and a seven-segment frame clock), small (160x120)
and encoded with a fixed keyframe interval, so stream-copy clips land close to the
requested length. The output is deterministic for a given PyAV/FFmpeg build: single-threaded
encoders and bit-exact muxing (no random Matroska segment id, no library version strings).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from fractions import Fraction

WIDTH, HEIGHT = 160, 120
HERE = os.path.dirname(os.path.abspath(__file__))

# Segments a..g of a seven-segment digit, as (row0, col0, row1, col1) in a 5x3 cell grid.
_SEGMENTS = {
    "a": (0, 0, 1, 3),
    "b": (0, 2, 3, 3),
    "c": (2, 2, 5, 3),
    "d": (4, 0, 5, 3),
    "e": (2, 0, 5, 1),
    "f": (0, 0, 3, 1),
    "g": (2, 0, 3, 3),
}
_DIGITS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
}


@dataclass(frozen=True)
class Spec:
    """One sample video: where it goes, how long, and how it is encoded."""

    path: str
    seconds: float
    fps: int
    gop: int  # frames between keyframes
    codec: str
    scene: str
    bframes: int = 0
    audio_hz: int = 0  # a sine tone of this pitch, or no audio track


SPECS = [
    Spec("bars.mp4", 6.0, 24, 12, "libx264", "bars", audio_hz=440),
    Spec("orbit.mkv", 5.0, 25, 25, "libx264", "orbit", bframes=2),
    Spec("nested/countdown.mov", 3.5, 30, 15, "mpeg4", "countdown"),
    Spec("nested/deeper/tide.mp4", 7.0, 15, 12, "libx264", "tide"),
]


def _draw_number(img, text: str, top: int, left: int, scale: int, color) -> None:
    x0 = left
    for ch in text:
        if ch == ".":
            img[top + 4 * scale : top + 5 * scale, x0 : x0 + scale] = color
            x0 += 2 * scale
            continue
        for seg in _DIGITS[ch]:
            r0, c0, r1, c1 = _SEGMENTS[seg]
            img[top + r0 * scale : top + r1 * scale, x0 + c0 * scale : x0 + c1 * scale] = color
        x0 += 4 * scale


def render(scene: str, index: int, fps: int):
    """The RGB frame `index` of a scene, as a (HEIGHT, WIDTH, 3) uint8 array."""
    import numpy as np

    t = index / fps
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    img = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    if scene == "bars":
        shift = int(t * 40)
        band = ((x + shift) // 20) % 8
        palette = np.array(
            [[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0],
             [255, 0, 255], [255, 0, 0], [0, 0, 255], [20, 20, 20]],
            dtype=np.uint8,
        )  # fmt: skip
        img[:] = palette[band]
    elif scene == "orbit":
        img[..., 2] = (y * 255 // HEIGHT).astype(np.uint8)
        cx = WIDTH / 2 + 45 * math.cos(2 * math.pi * t / 2.5)
        cy = HEIGHT / 2 + 35 * math.sin(2 * math.pi * t / 2.5)
        img[(x - cx) ** 2 + (y - cy) ** 2 < 15**2] = (255, 200, 0)
    elif scene == "countdown":
        level = int(255 * (1 - t / 4))
        img[:] = (level // 3, level // 2, level)
    elif scene == "tide":
        wave = HEIGHT / 2 + 20 * np.sin(2 * math.pi * (x / WIDTH + t / 3.5))
        img[y > wave] = (0, 90, 200)
        img[y <= wave] = (200, 230, 255)
    else:
        raise ValueError(f"unknown scene {scene!r}")
    # A frame clock (seconds.tenths) so every clip is recognisable by eye.
    clock = f"{int(t):d}.{int(t * 10) % 10:d}"
    _draw_number(img, clock, 6, 6, 4, (0, 0, 0))
    _draw_number(img, clock, 5, 5, 4, (255, 255, 255))
    return img


def write_video(spec: Spec, root: str) -> str:
    """Encode one spec to `root/spec.path`; returns the path written."""
    import av

    path = os.path.join(root, spec.path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames = round(spec.seconds * spec.fps)
    with av.open(path, "w", options={"fflags": "+bitexact"}) as out:
        video = out.add_stream(spec.codec, rate=spec.fps)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        ctx = video.codec_context
        ctx.gop_size = spec.gop
        ctx.thread_count = 1
        ctx.flags |= av.codec.context.Flags.bitexact
        if spec.codec == "libx264":
            ctx.max_b_frames = spec.bframes
            video.options = {
                "preset": "medium",
                "crf": "30",
                "x264-params": f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0"
                f":bframes={spec.bframes}:threads=1",
            }
        else:
            video.bit_rate = 150_000
            ctx.max_b_frames = 0
        audio = None
        if spec.audio_hz:
            audio = out.add_stream("aac", rate=22050, layout="mono")
            audio.bit_rate = 32_000
            audio.codec_context.flags |= av.codec.context.Flags.bitexact
        tone = _tone(spec.audio_hz, spec.seconds) if audio is not None else iter(())
        pending_audio = next(tone, None)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(render(spec.scene, i, spec.fps), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, spec.fps)
            out.mux(video.encode(frame))
            # Interleave: audio up to this frame's time, so the file plays from any point.
            while pending_audio is not None and pending_audio.time <= (i + 1) / spec.fps:
                out.mux(audio.encode(pending_audio))
                pending_audio = next(tone, None)
        out.mux(video.encode(None))
        if audio is not None:
            while pending_audio is not None:
                out.mux(audio.encode(pending_audio))
                pending_audio = next(tone, None)
            out.mux(audio.encode(None))
    return path


def _tone(hz: int, seconds: float, rate: int = 22050, chunk: int = 1024):
    """Audio frames of a quiet sine tone lasting `seconds`."""
    import av
    import numpy as np

    total = round(seconds * rate)
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = np.arange(start, start + n) / rate
        samples = (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        yield frame


def main(argv: list[str]) -> int:
    root = argv[0] if argv else os.path.join(HERE, "videos")
    total = 0
    for spec in SPECS:
        path = write_video(spec, root)
        size = os.path.getsize(path)
        total += size
        print(f"{path}: {spec.seconds:g} s, {spec.fps} fps, {spec.codec}, {size / 1024:.1f} KiB")
    print(f"total {total / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
