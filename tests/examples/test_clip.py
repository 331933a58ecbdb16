"""ClipTask end to end: the README's headline command on the sample videos, reruns,
shards, a corrupt input, and the cutting rules (keyframe cuts, exact re-encoded cuts,
dropped tails) checked by opening the clips with PyAV."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from conftest import REPO, failures, run_dispatch, tree

from dispatcher.outputs.records import is_provenance_name

av = pytest.importorskip("av")

TASK = REPO / "tasks" / "clip.py"
VIDEOS = REPO / "tasks" / "data" / "videos"
EXTENSIONS = {".mp4", ".mkv", ".mov", ".m4v", ".webm", ".avi"}
BACKBONE = "mp"  # the headline command's


def sample_videos(root: Path = VIDEOS) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in EXTENSIONS
    )


def clip(inp: Path, out: Path, *extra: str, cwd: Path):
    return run_dispatch(
        TASK, "ClipTask", "--backbone", BACKBONE,
        "--mixin", f"input={inp}", f"output={out}", *extra,
        cwd=cwd,
    )  # fmt: skip


def decoded_frames(path: Path) -> tuple[int, float]:
    """Frames decoded from the first video stream, and the time the last one ends."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count, end = 0, 0.0
        for frame in container.decode(stream):
            count += 1
            step = float(frame.duration * frame.time_base) if frame.duration else 0.0
            end = max(end, float(frame.time) + step)
    return count, end


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
    }


def load_task_module():
    from dispatcher.loader import load_module

    return load_module(str(TASK))


@pytest.fixture(scope="module")
def headline(tmp_path_factory):
    """One run of the headline command over the sample videos."""
    work = tmp_path_factory.mktemp("headline")
    out = work / "clips"
    result = clip(VIDEOS, out, cwd=work)
    return work, out, result


def test_sample_data_is_small_and_varied():
    names = sample_videos()
    assert len(names) >= 3
    assert any("/" in n for n in names), "a nested sub-folder"
    assert {Path(n).suffix for n in names} >= {".mp4", ".mkv"}
    total = sum(p.stat().st_size for p in (REPO / "tasks" / "data").rglob("*") if p.is_file())
    assert total <= 2 * 1024 * 1024


def test_headline_clips_every_video(headline):
    work, out, result = headline
    assert result.returncode == 0, result.stderr
    assert f"ran {len(sample_videos())} ({len(sample_videos())} ok, 0 failed)" in result.stderr
    for name in sample_videos():
        folder = out / name
        manifest = json.loads((folder / "clips.json").read_text())
        assert manifest["source"] == name
        assert manifest["mode"] == "stream-copy"
        clips = manifest["clips"]
        assert [c["file"] for c in clips] == [f"clip_{i:03d}.mp4" for i in range(len(clips))]
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [c["file"] for c in clips] + ["clips.json"]
        )
        # Clips tile the source: each starts where the last ended, and they add up.
        source_frames, source_end = decoded_frames(VIDEOS / name)
        assert clips[0]["start"] == 0.0
        for before, after in zip(clips, clips[1:], strict=False):
            assert after["start"] == pytest.approx(before["end"])
        dropped = (manifest["dropped_tail"] or {}).get("duration", 0.0)
        assert sum(c["duration"] for c in clips) + dropped == pytest.approx(source_end, abs=0.05)
        assert manifest["source_duration"] == pytest.approx(source_end, abs=0.05)
        # Every clip plays: it decodes, with the frames and length the manifest says.
        total = 0
        for c in clips:
            frames, end = decoded_frames(folder / c["file"])
            assert frames == c["frames"] > 0
            assert end == pytest.approx(c["duration"], abs=0.05)
            total += frames
        if manifest["dropped_tail"] is None:
            assert total == source_frames
    leftovers = [p for p in out.rglob(".*") if not is_provenance_name(p.name)]
    assert not leftovers, "no staging leftovers"
    assert not (out / "dispatch-logs").exists() and (work / "dispatch-logs").is_dir()


def test_keyframe_cuts_are_recorded(headline):
    """tide.mp4 has a keyframe every 0.8 s: clips start at the first keyframe at or after
    each multiple of 2 s, and the manifest says so."""
    _, out, _ = headline
    manifest = json.loads((out / "nested/deeper/tide.mp4/clips.json").read_text())
    assert [(c["start"], c["end"]) for c in manifest["clips"]] == [
        (0.0, 2.4), (2.4, 4.0), (4.0, 6.4), (6.4, 7.0),
    ]  # fmt: skip
    bars = json.loads((out / "bars.mp4/clips.json").read_text())
    assert bars["audio_codec"] == "aac"
    with av.open(str(out / "bars.mp4" / bars["clips"][1]["file"])) as container:
        assert len(container.streams.audio) == 1


def test_rerun_makes_nothing_new(headline):
    work, out, first = headline
    assert first.returncode == 0
    before = snapshot(out)
    again = clip(VIDEOS, out, cwd=work)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stderr
    assert snapshot(out) == before


def test_two_shards_make_exactly_one_run(headline, tmp_path):
    _, out, first = headline
    assert first.returncode == 0
    sharded = tmp_path / "clips"
    for shard in ("0/2", "1/2"):
        result = clip(VIDEOS, sharded, "--shard", shard, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert tree(sharded) == tree(out)


def test_corrupt_video_fails_alone(tmp_path):
    inp = tmp_path / "in"
    shutil.copytree(VIDEOS, inp)
    (inp / "nested" / "broken.mp4").write_bytes(random.Random(5).randbytes(4096))
    out = tmp_path / "clips"
    result = clip(inp, out, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    good = sample_videos(VIDEOS)
    assert f"ran {len(good) + 1} ({len(good)} ok, 1 failed)" in result.stderr
    [row] = failures(tmp_path / "dispatch-logs")
    assert row["key"] == "nested/broken.mp4"
    assert "not a readable video" in row["error"]
    assert not (out / "nested" / "broken.mp4").exists()
    for name in good:
        assert (out / name / "clips.json").is_file()
    # The rerun retries only the broken video.
    again = clip(inp, out, cwd=tmp_path)
    assert again.returncode == 1
    assert "ran 1 (0 ok, 1 failed)" in again.stderr


def test_bad_settings_are_config_errors(tmp_path):
    out = tmp_path / "clips"
    result = clip(VIDEOS, out, "clip_seconds=0", "min_clip_seconds=-1", cwd=tmp_path)
    assert result.returncode == 2
    assert "clip_seconds must be > 0" in result.stderr
    assert "min_clip_seconds must be between" in result.stderr
    assert not out.exists()


def test_reencode_cuts_exactly(tmp_path):
    module = load_task_module()
    src = VIDEOS / "nested/deeper/tide.mp4"
    manifest = module.cut_video(str(src), str(tmp_path), 2.0, 0.5, reencode=True, source="t")
    assert manifest["mode"] == "re-encoded"
    assert [(c["start"], c["end"]) for c in manifest["clips"]] == [
        (0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 7.0),
    ]  # fmt: skip
    counted = [decoded_frames(tmp_path / c["file"])[0] for c in manifest["clips"]]
    assert counted == [c["frames"] for c in manifest["clips"]] == [30, 30, 30, 15]


def test_short_tail_is_dropped(tmp_path):
    module = load_task_module()
    src = VIDEOS / "nested/deeper/tide.mp4"
    manifest = module.cut_video(str(src), str(tmp_path), 2.0, 1.0)
    assert [c["file"] for c in manifest["clips"]] == [
        "clip_000.mp4",
        "clip_001.mp4",
        "clip_002.mp4",
    ]
    assert manifest["dropped_tail"] == {"start": 6.4, "end": 7.0, "duration": 0.6}
    assert sorted(p.name for p in tmp_path.iterdir()) == [c["file"] for c in manifest["clips"]]
    frames = sum(decoded_frames(tmp_path / c["file"])[0] for c in manifest["clips"])
    assert frames == decoded_frames(src)[0] - 9  # 0.6 s at 15 fps


def test_not_a_video_is_a_clear_error(tmp_path):
    module = load_task_module()
    text = tmp_path / "notes.mkv"
    text.write_text("not a video\n")
    with pytest.raises(module.UnreadableVideo, match="not a readable video"):
        module.cut_video(str(text), str(tmp_path / "out"), 2.0)


def test_sample_videos_regenerate_deterministically(tmp_path):
    """make_videos.py rebuilds the samples: same names, frame counts and keyframe spacing,
    and byte-identical output on two runs."""
    import subprocess
    import sys

    script = REPO / "tasks" / "data" / "make_videos.py"
    for name in ("a", "b"):
        subprocess.run([sys.executable, script, tmp_path / name], check=True, capture_output=True)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert sample_videos(tmp_path / "a") == sample_videos()
    for name in sample_videos():
        with av.open(str(tmp_path / "a" / name)) as container:
            stream = container.streams.video[0]
            keys = [p.pts * stream.time_base for p in container.demux(stream) if p.is_keyframe]
        assert decoded_frames(tmp_path / "a" / name)[0] == decoded_frames(VIDEOS / name)[0]
        gaps = {b - a for a, b in zip(keys, keys[1:], strict=False)}
        assert len(gaps) == 1 and 0.4 <= float(gaps.pop()) <= 1.0, name
