"""Cut every video under an input folder into fixed-length clips, with PyAV.

    dispatch tasks/clip.py ClipTask --backbone mp \
        --mixin input=tasks/data/videos output=out/clips

Each video `INPUT/a/b.mp4` becomes a folder `OUTPUT/a/b.mp4/` holding `clip_000.mp4`,
`clip_001.mp4`, ... and `clips.json`, the manifest that marks the video as done.

By default the clips are cut by stream copy: packets are remuxed without decoding, so
cutting is fast and lossless, but a clip can only start on a keyframe. A boundary falls on
the first keyframe at or after each multiple of `clip_seconds`, so clips are close to, not
exactly, the requested length; the manifest records the actual boundaries. With
`reencode=true` the video is decoded and re-encoded and clips are cut at exact times.
A file that is not a readable video fails its item with the reason; the run goes on.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from dispatcher import Placeholder, Task
from dispatcher.outputs import remove_path
from templates import FinishWhenExists, InputByExtensions, OutputSubfolder, cpu_task

VIDEO_EXTENSIONS = [".mp4", ".mkv", ".mov", ".m4v", ".webm", ".avi"]
CLIP_FORMAT = "mp4"
STREAM_COPY = "stream-copy"
REENCODED = "re-encoded"


class UnreadableVideo(ValueError):
    """The input cannot be opened or demuxed as a video."""


def clip_name(index: int) -> str:
    return f"clip_{index:03d}.mp4"


def _seconds(value: Fraction) -> float:
    return round(float(value), 6)


@dataclass
class _Probe:
    """What one demux pass over the video stream found (no decoding)."""

    start_pts: int
    end_pts: int
    time_base: Fraction
    packet_pts: list[int] = field(default_factory=list)  # decode order
    keyframes: list[int] = field(default_factory=list)  # indexes into packet_pts
    copyable: bool = True  # every packet has a timestamp
    video_codec: str = ""
    audio_codec: str | None = None  # of the first audio stream

    def time(self, pts: int) -> Fraction:
        """Seconds from the start of the video."""
        return (pts - self.start_pts) * self.time_base

    @property
    def duration(self) -> Fraction:
        return self.time(self.end_pts)


def _unreadable(exc: Exception) -> UnreadableVideo:
    """The reason in FFmpeg's words, without the path (the item key already names it)."""
    reason = getattr(exc, "strerror", None) or str(exc)
    log = getattr(exc, "log", None)  # FFmpeg's last message, when its logging is enabled
    if log and log[2].strip():
        reason += f" ({log[2].strip()})"
    return UnreadableVideo(f"not a readable video: {reason}")


def _open(src: str) -> Any:
    import av

    try:
        container = av.open(src)
    except av.error.FFmpegError as exc:
        raise _unreadable(exc) from None
    if not container.streams.video:
        container.close()
        raise UnreadableVideo("not a readable video: it has no video stream")
    return container


def _probe(src: str) -> _Probe:
    """Timestamps and keyframes of the first video stream, by demuxing only."""
    import av

    with _open(src) as container:
        stream = container.streams.video[0]
        if stream.time_base is None:
            raise UnreadableVideo("not a readable video: its video stream has no time base")
        probe = _Probe(0, 0, Fraction(stream.time_base))
        probe.video_codec = stream.codec_context.name
        if container.streams.audio:
            probe.audio_codec = container.streams.audio[0].codec_context.name
        start = end = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    probe.copyable = False
                    continue
                if packet.is_keyframe:
                    probe.keyframes.append(len(probe.packet_pts))
                probe.packet_pts.append(packet.pts)
                start = packet.pts if start is None else min(start, packet.pts)
                last = packet.pts + max(packet.duration or 0, 0)
                end = last if end is None else max(end, last)
        except av.error.FFmpegError as exc:
            raise _unreadable(exc) from None
    if start is None:
        raise UnreadableVideo("not a readable video: its video stream holds no frames")
    probe.start_pts, probe.end_pts = start, end
    return probe


def _limit(seconds: float) -> Fraction:
    return Fraction(seconds).limit_denominator(1_000_000)


def keyframe_cuts(probe: _Probe, clip_seconds: float, min_clip_seconds: float) -> list[int]:
    """Packet indexes where clips start: the first keyframe at or after each multiple of
    `clip_seconds`, skipping one that would leave the clip before it shorter than
    `min_clip_seconds`. The first clip starts at the first packet."""
    step, shortest = _limit(clip_seconds), _limit(min_clip_seconds)
    cuts = [0]
    start = probe.time(probe.packet_pts[0])
    target = step
    for index in probe.keyframes:
        if index == 0:
            continue
        when = probe.time(probe.packet_pts[index])
        if when >= target and when - start >= shortest:
            cuts.append(index)
            start = when
            target = step * (math.floor(when / step) + 1)
    return cuts


def _decode_timestamps(pts: list[int]) -> list[int]:
    """Monotonic decode timestamps for packets in decode order, none after its own pts.

    Containers such as Matroska leave some of them out; rebuilding them from the
    presentation times (the i-th smallest pts, shifted by the reorder delay) works for
    every source alike.
    """
    ordered = sorted(pts)
    shift = max(o - p for o, p in zip(ordered, pts, strict=True))
    return [o - shift for o in ordered]


class _ClipWriters:
    """Clip files opened on first use and closed once every stream has moved past them.

    A stream that lags more than `lag` clips behind the leading one (a short or silent
    audio track) does not keep files open: its late packets for closed clips are dropped.
    """

    def __init__(
        self, folder: str, open_clip: Callable[[str], Any], streams: int, lag: int
    ) -> None:
        self.folder = folder
        self.open_clip = open_clip
        self.open: dict[int, Any] = {}
        self.position = [0] * streams
        self.lag = lag
        self.closed_below = 0
        self.dropped = 0

    def get(self, index: int, stream: int) -> Any | None:
        """The open clip `index` for a packet of `stream`; None if that clip is closed."""
        self.position[stream] = max(self.position[stream], index)
        watermark = max(min(self.position), max(self.position) - self.lag)
        while self.closed_below < watermark:
            self.close(self.closed_below)
            self.closed_below += 1
        if index < self.closed_below:
            if stream == 0:
                raise RuntimeError(
                    "the streams are interleaved too far apart to cut them in one pass"
                )
            self.dropped += 1
            return None
        if index not in self.open:
            path = os.path.join(self.folder, clip_name(index))
            self.open[index] = self.open_clip(path)
        return self.open[index]

    def close(self, index: int) -> None:
        clip = self.open.pop(index, None)
        if clip is not None:
            clip.close()

    def close_all(self) -> None:
        for index in sorted(self.open):
            self.close(index)


def _lag(clip_seconds: float) -> int:
    """How many clips a stream may trail by: FFmpeg interleaves streams within 10 s."""
    return max(2, math.ceil(10 / clip_seconds))


def _output(path: str) -> Any:
    import av

    return av.open(path, "w", format=CLIP_FORMAT, options={"fflags": "+bitexact"})


class _CopiedClip:
    def __init__(self, path: str, templates: list[Any]) -> None:
        self.container = _output(path)
        self.streams = [self.container.add_stream_from_template(t) for t in templates]

    def close(self) -> None:
        self.container.close()


def _stream_copy(
    src: str,
    folder: str,
    probe: _Probe,
    cuts: list[int],
    clip_count: int,
    clip_seconds: float,
    audio: bool,
) -> int:
    """Remux the packets of clip `i` (video packets cuts[i]..cuts[i+1] in decode order,
    audio packets by time) into folder/clip_{i}.mp4, rebased to start at zero. Returns
    how many late audio packets were dropped."""
    import av

    with _open(src) as container:
        video = container.streams.video[0]
        sound = container.streams.audio[0] if audio and container.streams.audio else None
        templates = [video] if sound is None else [video, sound]
        writers = _ClipWriters(
            folder, lambda p: _CopiedClip(p, templates), len(templates), _lag(clip_seconds)
        )
        router = _CopyRouter(probe, cuts, clip_count, writers, sound)
        try:
            for packet in container.demux(templates):
                if packet.size == 0:
                    continue
                if packet.stream.index == video.index:
                    router.video(packet)
                else:
                    router.audio(packet)
        except av.error.FFmpegError as exc:
            raise _unreadable(exc) from None
        finally:
            writers.close_all()
    return writers.dropped


class _CopyRouter:
    """Sends each demuxed packet of a stream copy to its clip, rebased to the clip's start:
    video packets by their position in decode order, audio packets by time."""

    def __init__(
        self, probe: _Probe, cuts: list[int], clip_count: int, writers: _ClipWriters, sound: Any
    ) -> None:
        self.probe, self.cuts, self.clip_count, self.writers = probe, cuts, clip_count, writers
        self.dts = [0] * len(probe.packet_pts)
        bounds = [*cuts, len(probe.packet_pts)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            self.dts[a:b] = _decode_timestamps(probe.packet_pts[a:b])
        self.video_index, self.clip = 0, 0
        self.audio_starts: list[int] = []
        self.audio_ends: list[int] = []
        if sound is not None:  # clip starts and ends in the audio time base
            starts = [probe.time(probe.packet_pts[c]) for c in cuts[:clip_count]]
            last_end = (
                probe.time(probe.packet_pts[cuts[clip_count]])
                if clip_count < len(cuts)
                else probe.duration
            )
            ends = [*starts[1:], last_end]
            origin = probe.start_pts * probe.time_base
            tb = Fraction(sound.time_base)
            self.audio_starts = [round((start + origin) / tb) for start in starts]
            self.audio_ends = [math.ceil((end + origin) / tb) for end in ends]

    def video(self, packet: Any) -> None:
        if packet.pts is None:
            return
        pts, cuts, index = self.probe.packet_pts, self.cuts, self.video_index
        if index >= len(self.dts) or packet.pts != pts[index]:
            raise RuntimeError("the video packets changed between two reads")
        while self.clip + 1 < len(cuts) and index >= cuts[self.clip + 1]:
            self.clip += 1
        self.video_index = index + 1
        clip = self.clip
        if clip >= self.clip_count:
            return  # the dropped tail
        offset = pts[cuts[clip]]
        out = self.writers.get(clip, 0)
        packet.dts = self.dts[index] - offset
        packet.pts -= offset
        packet.stream = out.streams[0]
        out.container.mux(packet)

    def audio(self, packet: Any) -> None:
        if packet.pts is None or not self.clip_count:
            return
        target = bisect.bisect_right(self.audio_ends, packet.pts)
        if target >= self.clip_count:
            return  # after the last clip (the dropped tail)
        out = self.writers.get(target, 1)
        if out is None:
            return
        packet.pts -= self.audio_starts[target]
        packet.dts = packet.pts
        packet.stream = out.streams[1]
        out.container.mux(packet)


ENCODERS = {"libx264": "h264", "mpeg4": "mpeg4"}  # preferred first; encoder -> codec


def _encoder() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class _EncodedClip:
    def __init__(self, path: str, video: Any, sound: Any) -> None:
        self.container = _output(path)
        codec = _encoder()
        rate = video.average_rate or video.guessed_rate or 25
        self.video = self.container.add_stream(codec, rate=rate)
        ctx = self.video.codec_context
        self.video.width, self.video.height = video.width, video.height
        self.video.pix_fmt = "yuv420p"
        ctx.thread_count = 1
        if codec == "libx264":
            ctx.time_base = video.time_base
            self.video.options = {"preset": "veryfast", "crf": "23"}
        self.audio = None
        if sound is not None:
            self.audio = self.container.add_stream(
                "aac", rate=sound.sample_rate, layout=sound.layout.name
            )

    def encode(self, stream: Any, frame: Any) -> None:
        self.container.mux(stream.encode(frame))

    def close(self) -> None:
        self.container.mux(self.video.encode(None))
        if self.audio is not None:
            self.container.mux(self.audio.encode(None))
        self.container.close()


def _reencode(
    src: str, folder: str, probe: _Probe, clip_seconds: float, clip_count: int, audio: bool
) -> tuple[list[int], int]:
    """Decode and re-encode: a frame goes to clip floor(t / clip_seconds). Returns the
    number of video frames written to each clip, and of late audio frames dropped."""
    import av

    step = _limit(clip_seconds)
    frames = [0] * clip_count
    with _open(src) as container:
        video = container.streams.video[0]
        sound = container.streams.audio[0] if audio and container.streams.audio else None
        streams = [video] if sound is None else [video, sound]
        writers = _ClipWriters(
            folder, lambda p: _EncodedClip(p, video, sound), len(streams), _lag(clip_seconds)
        )
        origin = probe.start_pts * probe.time_base
        try:
            for frame in container.decode(*streams):
                if frame.pts is None or frame.time_base is None:
                    continue
                when = frame.pts * Fraction(frame.time_base) - origin
                index = max(0, math.floor(when / step))
                if index >= clip_count:
                    continue
                is_video = isinstance(frame, av.VideoFrame)
                out = writers.get(index, 0 if is_video else 1)
                if out is None:
                    continue
                shift = round((index * step + origin) / Fraction(frame.time_base))
                frame.pts -= shift
                if is_video:
                    frames[index] += 1
                    frame.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose
                    out.encode(out.video, frame)
                else:
                    out.encode(out.audio, frame)
        except av.error.FFmpegError as exc:
            raise _unreadable(exc) from None
        finally:
            writers.close_all()
    return frames, writers.dropped


def _copy_problems(probe: _Probe, audio: bool) -> list[str]:
    """Why the clips cannot be made by stream copy (nothing when they can)."""
    import av

    with av.open(os.devnull, "w", format=CLIP_FORMAT) as sink:
        supported = sink.supported_codecs
    codecs = [probe.video_codec, probe.audio_codec if audio else None]
    problems = [
        f"{CLIP_FORMAT} cannot hold {name} by stream copy"
        for name in codecs
        if name is not None and name not in supported
    ]
    if not probe.copyable:
        problems.append("some video packets carry no timestamp")
    return problems


def cut_video(
    src: str,
    folder: str,
    clip_seconds: float,
    min_clip_seconds: float = 0.0,
    reencode: bool = False,
    audio: bool = True,
    source: str | None = None,
) -> dict[str, Any]:
    """Cut `src` into `folder/clip_NNN.mp4` and return the manifest (not written here).

    Raises `UnreadableVideo` when `src` cannot be read as a video.
    """
    os.makedirs(folder, exist_ok=True)
    probe = _probe(src)
    problems = _copy_problems(probe, audio)
    mode = REENCODED if reencode or problems else STREAM_COPY
    total = probe.duration
    cuts, starts, ends, counts = _clip_times(probe, mode, clip_seconds, min_clip_seconds)
    keep = len(starts)
    if keep and ends[-1] - starts[-1] < _limit(min_clip_seconds):
        keep -= 1  # a tail shorter than min_clip_seconds is not worth a clip

    audio_codec = probe.audio_codec if audio else None
    if mode == STREAM_COPY:
        dropped_audio = _stream_copy(src, folder, probe, cuts, keep, clip_seconds, audio)
        frames, video_codec = counts[:keep], probe.video_codec
    else:
        frames, dropped_audio = _reencode(src, folder, probe, clip_seconds, keep, audio)
        video_codec = ENCODERS[_encoder()]
        audio_codec = audio_codec and "aac"

    clips, notes = _clip_entries(folder, frames, starts[:keep], ends[:keep])
    if dropped_audio:
        notes.append(f"{dropped_audio} audio packets dropped: streams interleaved over 10 s apart")
    dropped = None
    if keep < len(starts):
        dropped = {
            "start": _seconds(starts[keep]),
            "end": _seconds(total),
            "duration": _seconds(total - starts[keep]),
        }
    return {
        "source": source if source is not None else os.path.basename(src),
        "source_duration": _seconds(total),
        "mode": mode,
        "reason": "; ".join(problems) if mode == REENCODED and not reencode else None,
        "video_codec": video_codec,  # of the clips
        "audio_codec": audio_codec,
        "clip_seconds": clip_seconds,
        "min_clip_seconds": min_clip_seconds,
        "clips": clips,
        "dropped_tail": dropped,
        "notes": notes,
    }


def _clip_times(
    probe: _Probe, mode: str, clip_seconds: float, min_clip_seconds: float
) -> tuple[list[int], list[Fraction], list[Fraction], list[int]]:
    """(cut packet indexes, clip starts, clip ends, video packets per clip): by stream
    copy on keyframes, else at exact times."""
    total = probe.duration
    if mode == STREAM_COPY:
        cuts = keyframe_cuts(probe, clip_seconds, min_clip_seconds)
        starts = [probe.time(probe.packet_pts[c]) for c in cuts]
        counts = [b - a for a, b in zip(cuts, [*cuts[1:], len(probe.packet_pts)], strict=True)]
        return cuts, starts, [*starts[1:], total], counts
    step = _limit(clip_seconds)
    n = max(1, math.ceil(total / step))
    starts = [step * i for i in range(n)]
    return [], starts, [min(step * (i + 1), total) for i in range(n)], []


def _clip_entries(
    folder: str, frames: list[int], starts: list[Fraction], ends: list[Fraction]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The manifest's clips, and notes on the clips removed for having no video frame."""
    clips = []
    notes = []
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if not frames[i]:  # a gap in a variable-frame-rate video: nothing to show
            remove_path(os.path.join(folder, clip_name(i)))
            notes.append(f"no video frames between {_seconds(start)} s and {_seconds(end)} s")
            continue
        clips.append(
            {
                "file": clip_name(i),
                "start": _seconds(start),
                "end": _seconds(end),
                "duration": _seconds(end - start),
                "frames": frames[i],
            }
        )
    return clips, notes


@cpu_task(
    input=Placeholder(str, help="folder of videos (searched recursively)"),
    output=Placeholder(str, help="folder that gets one sub-folder of clips per video"),
    input_mode=InputByExtensions(exts=VIDEO_EXTENSIONS),
    output_mode=OutputSubfolder(files={"manifest": "clips.json"}),
    finish=FinishWhenExists("manifest"),
    clip_seconds=Placeholder(float, default=2.0, help="target clip length in seconds"),
    min_clip_seconds=Placeholder(
        float, default=0.5, help="no clip is shorter than this: a shorter last clip is dropped"
    ),
    reencode=Placeholder(
        bool,
        default=False,
        help="decode and re-encode for exact cuts (slow) instead of stream copy",
    ),
    audio=Placeholder(bool, default=True, help="keep the first audio track in the clips"),
)
class ClipTask(Task):
    """Cuts every video under INPUT into clips of about clip_seconds, one folder per video."""

    requires = {"av": "video"}

    def validate(self) -> list[str]:
        problems = list(super().validate())
        if not self.mixin.clip_seconds > 0:
            problems.append(f"clip_seconds must be > 0, got {self.mixin.clip_seconds}")
        if not 0 <= self.mixin.min_clip_seconds <= self.mixin.clip_seconds:
            problems.append(
                f"min_clip_seconds must be between 0 and clip_seconds "
                f"({self.mixin.clip_seconds}), got {self.mixin.min_clip_seconds}"
            )
        return problems

    def process(self, input: str, output: str, output_manifest: str, **item: Any) -> None:
        source = self.item_source().key_of({"input": input, **item})  # the item's key
        manifest = cut_video(
            input,
            output,
            clip_seconds=self.mixin.clip_seconds,
            min_clip_seconds=self.mixin.min_clip_seconds,
            reencode=self.mixin.reencode,
            audio=self.mixin.audio,
            source=source,
        )
        # The manifest is the finish marker: written last, once every clip is complete.
        with open(output_manifest, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2)
            fh.write("\n")
