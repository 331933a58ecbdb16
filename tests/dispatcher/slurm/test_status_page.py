"""`dispatch status --html FILE`: one self-contained page, rendered by a real browser
(headless Chromium, no network), with a row per shard, throughput over time from the run
records' samples, failures by kind, and the commands that finish the set."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run_dispatch, start_dispatch, task_file

from dispatcher.report.throughput import curve, throughput, value_at

START = dt.datetime(2026, 12, 7, 10, 0, 0, tzinfo=dt.timezone.utc)


def _record(offset: float, samples: list[list[float]]) -> dict:
    start = (START + dt.timedelta(seconds=offset)).isoformat()
    return {"start": start, "samples": samples}


def test_throughput_sums_the_shards_per_time_bin():
    a = curve(_record(0, [[10, 100, 0]]))  # 10 items/s from 0 to 10 s
    b = curve(_record(5, [[4, 20, 4], [10, 50, 10]]))  # 5/s from 5 to 15 s, 1/s failing
    assert value_at(a, START.timestamp() + 5, 1) == 50 and value_at(b, 0, 1) == 0
    rates = throughput([a, b], bins=3)
    assert rates is not None and rates.width == 5 and rates.start == START.timestamp()
    assert rates.settled == pytest.approx([10, 15, 5])
    assert rates.failed == pytest.approx([0, 1, 1])
    # Unreadable records and runs without a sample in time draw nothing.
    assert curve({"start": "yesterday"}) == [] and throughput([curve(_record(0, []))]) is None
    assert len(curve(_record(0, [[1, 5, 0], ["x", 1, 1], [2, 3, 0], [3, 9, True]]))) == 2


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _browse(page: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on the page, sandbox off (root), nothing fetched in the background."""
    browser = _chromium()
    assert browser is not None
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1200,1400", *flags, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _three_shards(tmp_path: Path) -> list[str]:
    """Shards 0 and 1 of 3 ran (some items failed), shard 2 was killed by SIGKILL."""
    command = [str(task_file("status_page_work")), "Work", "--backbone", "serial",
               "--log-dir", str(tmp_path / "logs"), "--mixin", f"out={tmp_path / 'out'}",
               "n=24"]  # fmt: skip
    for shard in (0, 1):
        done = run_dispatch(*command, "--shard", f"{shard}/3", cwd=tmp_path)
        assert done.returncode == 1, done.stderr  # some items failed
    # Shard 2's items in order: 0001 0006 0007 0009 ...; 0009 hangs, the first three are made.
    job = start_dispatch(*command, "--shard", "2/3", "--mixin", "hang_on=9",
                         start_new_session=True, cwd=tmp_path)  # fmt: skip
    made = [tmp_path / "out" / f"{i:04d}.txt" for i in (1, 6, 7)]
    deadline = time.monotonic() + 60
    while not all(p.exists() for p in made) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    return command


@pytest.mark.skipif(_chromium() is None, reason="no Chromium (.ci/run installs Debian's)")
def test_the_status_page_renders_every_shard_its_failures_and_the_way_on(tmp_path):
    command = _three_shards(tmp_path)
    page = tmp_path / "status.html"
    shown = run_dispatch("status", "--array", "3", "--html", "status.html", "--", *command,
                         cwd=tmp_path)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"dispatch: status page {page}" in shown.stderr
    text = page.read_text()
    # Self-contained: nothing to fetch, no script.
    assert not re.search(r"(src|href)\s*=|https?://|<script|@import", text, re.I)
    assert "<bad" not in text  # an error's markup is shown, not obeyed

    dumped = _browse(page, "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr
    dom = dumped.stdout
    rows = re.findall(r'<tr class="shard" data-shard="(\d)">(.*?)</tr>', dom, re.S)
    assert [shard for shard, _ in rows] == ["0", "1", "2"]
    cells = {shard: re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for shard, row in rows}
    # shard 0: 0000 0002 0004 0008 0016 0018 0019 0021 0022 -> 4 fail (0, 4, 8, 16)
    assert cells["0"][2:6] == ["9", "5", "4", "4"]
    assert ">some items failed</span>" in cells["0"][6] and "<svg" in cells["0"][9]
    assert re.search(r">killed</span><br><small>last heartbeat 20\d\d-", cells["2"][6])
    assert cells["2"][2:5] == ["7", "3", "4"]
    assert '<svg id="throughput"' in dom and "<polyline" in dom
    # Failures by kind: one kind, masked, with its count and first item; markup escaped.
    # (Shard 0 failed 0000 0004 0008 0016, shard 1 0020; killed shard 2 wrote none.)
    kinds = re.findall(r'<tr class="failure">(.*?)</tr>', dom, re.S)
    assert len(kinds) == 1 and '<td class="n">5</td>' in kinds[0] and "0000" in kinds[0]
    assert "cannot read &lt;PATH&gt; at byte &lt;N&gt;: &lt;bad &amp; header&gt;" in kinds[0]
    assert dom.count("failures.jsonl") == 2  # the two runs that got to write one
    commands = re.search(r'<pre id="commands">(.*?)</pre>', dom, re.S)
    # (--no-queue-check where this machine's squeue does not answer)
    assert commands and re.search(
        r"dispatch submit --resubmit( --no-queue-check)? --array 3 -- ", commands[1]
    )
    assert "# to run: 9 items in shards 0, 1, 2" in commands[1]

    shot = tmp_path / "status.png"
    taken = _browse(page, f"--screenshot={shot}")
    assert taken.returncode == 0 and shot.is_file(), taken.stderr
    from PIL import Image

    with Image.open(io.BytesIO(shot.read_bytes())) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, bars, badges, a chart


def test_status_html_is_refused_before_any_work_where_it_cannot_be_written(tmp_path):
    command = [str(task_file("status_page_work")), "Work", "--mixin", f"out={tmp_path / 'out'}"]
    for target, message in [
        (tmp_path / "nowhere" / "s.html", f"no folder {tmp_path / 'nowhere'} to write it in"),
        (tmp_path, "is a folder; give a file name (status.html)"),
    ]:
        shown = run_dispatch("status", "--array", "2", "--html", target, "--", *command)
        assert shown.returncode == 2 and message in shown.stderr, shown.stderr
        assert shown.stdout == ""


def test_a_run_of_every_item_is_the_one_shard_of_one(tmp_path):
    command = [str(task_file("status_page_work")), "Work", "--backbone", "serial",
               "--log-dir", str(tmp_path / "logs"), "--mixin", f"out={tmp_path / 'out'}",
               "n=6", "fail_every=0"]  # fmt: skip
    assert run_dispatch(*command, cwd=tmp_path).returncode == 0
    shown = run_dispatch("status", "--array", "1", "--json", "--", *command, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert '"outcome": "success"' in shown.stdout and '"done": 6' in shown.stdout
