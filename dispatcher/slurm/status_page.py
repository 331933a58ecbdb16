"""`dispatch status --html FILE`: the status of every shard as one self-contained page.

One file, no network: the style is inline and the charts are inline SVG, so the page opens
from a laptop's downloads folder, a shared drive or an e-mail attachment alike. It shows
what `dispatch status` prints and what the run records add: each shard's progress and last
outcome (each device's share under a shard its last run spread over devices), throughput
over time from the records' progress samples, the failures of the last runs by kind, and
the commands that finish the set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
from collections.abc import Iterator
from html import escape
from typing import Any

from dispatcher.manifest import Manifest
from dispatcher.report.failure_groups import FailureGroups
from dispatcher.report.run_record import now_text
from dispatcher.report.throughput import Point, Throughput, curve, throughput
from dispatcher.slurm.command import Command
from dispatcher.slurm.shard_row import Records, ShardRow

FAILURES_READ = 100_000
"""Lines of one shard's failures.jsonl read for the page (the file keeps every one)."""
KINDS_SHOWN = 20


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px 32px;color:#1d2430;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#5b6575;margin:0 0 16px}.meta code{color:#1d2430}
.totals{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.total{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 16px;min-width:110px}
.total b{display:block;font-size:22px}.total span{color:#5b6575}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e7;width:100%}
th,td{padding:6px 10px;border-bottom:1px solid #eceff3;text-align:left;vertical-align:middle}
th{background:#eef1f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{width:180px;height:12px;background:#e3e7ed;border-radius:6px;overflow:hidden;display:inline-block}
.bar i{display:block;height:100%;background:#2f9e5b}.bar.big{width:100%;height:16px}
.badge{border-radius:10px;padding:1px 8px;font-size:12px;white-space:nowrap;color:#fff;background:#7a8494}
.success{background:#2f9e5b}.running{background:#2f6fd6}.failed{background:#d08a12}
.killed,.crashed{background:#c53a3a}.stopped{background:#6d5bd0}
tr.device td{color:#5b6575;font-size:13px;padding-left:28px}
pre{background:#1d2430;color:#e8ecf2;padding:12px 16px;border-radius:8px;white-space:pre-wrap;
word-break:break-all}small{color:#5b6575}
td.when{white-space:nowrap}svg text{font:11px system-ui,sans-serif;fill:#5b6575}.empty{color:#5b6575}
"""


def _badge(outcome: str | None) -> str:
    text = outcome or "no record"
    if text == "success":
        kind = "success"
    elif text == "running":
        kind = "running"
    elif text.startswith("killed"):
        kind = "killed"
    elif "crash" in text or "abort" in text:
        kind = "crashed"
    elif "interrupt" in text or "stopp" in text:
        kind = "stopped"
    elif "fail" in text:
        kind = "failed"
    else:
        kind = "none"
    word, _, detail = text.partition(" (")
    small = f"<br><small>{escape(detail.rstrip(')'))}</small>" if detail else ""
    return f'<span class="badge {kind}">{escape(word)}</span>{small}'


def _bar(done: int, items: int, big: bool = False) -> str:
    share = 100.0 * done / items if items else 100.0
    title = f"{done} of {items} done ({share:.1f}%)"
    size = " big" if big else ""
    return f'<span class="bar{size}" title="{title}"><i style="width:{share:.2f}%"></i></span>'


def _sparkline(points: list[Point], width: int = 120, height: int = 26) -> str:
    """Items settled over the run, as a small line."""
    if len(points) < 2 or points[-1][0] <= points[0][0] or points[-1][1] <= 0:
        return '<span class="empty">-</span>'
    t0, t1, top = points[0][0], points[-1][0], points[-1][1]
    xy = " ".join(
        f"{(t - t0) / (t1 - t0) * width:.1f},{height - 2 - s / top * (height - 4):.1f}"
        for t, s, _ in points
    )
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<polyline points="{xy}" fill="none" stroke="#2f6fd6" stroke-width="1.5"/></svg>'
    )


def _clock(at: float) -> str:
    return dt.datetime.fromtimestamp(at).astimezone().strftime("%H:%M:%S")


def _after(seconds: float) -> str:
    """`+42s`, `+12m`, `+3h05m`: a time on the chart's axis, after its start."""
    if seconds < 60:
        return f"+{seconds:.3g}s"
    if seconds < 3600:
        return f"+{seconds / 60:.0f}m"
    return f"+{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _chart(rates: Throughput, width: int = 880, height: int = 220) -> str:
    """Items per second of every shard together, settled (blue) and failed (red)."""
    left, bottom, top_pad = 56, 24, 10
    inner_w, inner_h = width - left - 10, height - bottom - top_pad
    top = max(max(rates.settled), max(rates.failed), 1e-9)

    def line(values: list[float], colour: str, fill: bool) -> str:
        step = inner_w / len(values)
        xy = [
            f"{left + (i + 0.5) * step:.1f},{top_pad + inner_h - v / top * inner_h:.1f}"
            for i, v in enumerate(values)
        ]
        base = top_pad + inner_h
        area = ""
        if fill:
            poly = f"{left + 0.5 * step:.1f},{base} {' '.join(xy)} {left + inner_w - 0.5 * step:.1f},{base}"
            area = f'<polygon points="{poly}" fill="{colour}" fill-opacity="0.15"/>'
        path = f'<polyline points="{" ".join(xy)}" fill="none" stroke="{colour}" stroke-width="2"/>'
        return area + path

    grid = []
    for frac in (0.0, 0.5, 1.0):
        y = top_pad + inner_h - frac * inner_h
        grid.append(
            f'<line x1="{left}" x2="{left + inner_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7ed"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{top * frac:.3g}/s</text>'
        )
    for frac in (0.0, 0.5, 1.0):
        x = left + frac * inner_w
        span = frac * (rates.end - rates.start)
        label = _clock(rates.start) if frac == 0 else _after(span)
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        grid.append(f'<text x="{x:.1f}" y="{height - 6}" text-anchor="{anchor}">{label}</text>')
    failed = line(rates.failed, "#c53a3a", False) if any(rates.failed) else ""
    return (
        f'<svg id="throughput" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="items per second over time">'
        f'<rect width="{width}" height="{height}" fill="#fff"/>{"".join(grid)}'
        f"{line(rates.settled, '#2f6fd6', True)}{failed}</svg>"
    )


def _device_rows(record: dict[str, Any]) -> Iterator[str]:
    for device in record.get("devices") or []:
        if not isinstance(device, dict):
            continue
        rate = device.get("items_per_second")
        parts = [f"{device.get('items', 0)} items", f"{device.get('failed', 0)} failed"]
        if rate:
            parts.append(f"{rate:.1f} items/s")
        if device.get("restarts"):
            parts.append(f"restarted {device['restarts']}x")
        if device.get("dropped"):
            parts.append("dropped")
        yield (
            f'<tr class="device"><td colspan="10">{escape(str(device.get("device")))}: '
            f"{escape(', '.join(parts))}</td></tr>"
        )


def _shard_rows(rows: list[ShardRow], records: Records, squeue: bool) -> Iterator[str]:
    for row in rows:
        record = records.get(row.shard, ("", {}))[1]
        counts = record.get("counts") or {}
        queue = row.queue or ("" if squeue else "queue ?")
        where = " ".join(w for w in (row.job, queue) if w) or "-"
        beat = str(record.get("end") or record.get("heartbeat") or "-").replace("T", " ")
        yield (
            f'<tr class="shard" data-shard="{row.shard}"><td class="n">{row.shard}</td>'
            f"<td>{_bar(row.done, row.items)}</td><td class='n'>{row.items}</td>"
            f"<td class='n'>{row.done}</td><td class='n'>{row.to_run}</td>"
            f"<td class='n'>{counts.get('failed', '-')}</td><td>{_badge(row.outcome)}</td>"
            f"<td>{escape(where)}</td><td class='when'>{escape(beat)}</td>"
            f"<td>{_sparkline(curve(record))}</td></tr>"
        )
        yield from _device_rows(record)


def failure_groups(records: Records) -> tuple[FailureGroups, list[str]]:
    """The failures of each shard's last run by kind, and the failures.jsonl files read."""
    groups, paths = FailureGroups(), []
    for _, (record_path, _) in sorted(records.items()):
        path = os.path.join(os.path.dirname(record_path), "failures.jsonl")
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for number, line in enumerate(fh):
                    if number >= FAILURES_READ:
                        break
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(row, dict) and row.get("error"):
                        groups.add(str(row.get("key")), str(row["error"]))
        except OSError:
            continue
        paths.append(path)
    return groups, paths


def _failures(records: Records) -> str:
    groups, paths = failure_groups(records)
    if not groups.count:
        return '<p class="empty">No failures in the last run of any shard.</p>'
    ordered = sorted(groups.kinds.items(), key=lambda kv: (-kv[1].count, kv[1].key))
    body = "".join(
        f'<tr class="failure"><td class="n">{seen.count}</td><td><code>{escape(kind)}</code></td>'
        f"<td>{escape(seen.key)}</td><td><code>{escape(seen.error)}</code></td></tr>"
        for kind, seen in ordered[:KINDS_SHOWN]
    )
    more = ordered[KINDS_SHOWN:]
    tail = f"<p>… and {len(more)} more kinds.</p>" if more else ""
    files = "".join(f"<li><code>{escape(p)}</code></li>" for p in paths)
    return (
        '<table id="failures"><tr><th>items</th><th>kind (numbers, paths, quoted values '
        f"masked)</th><th>first item</th><th>its error</th></tr>{body}</table>{tail}"
        f"<p>Every failed item, with its traceback:</p><ul>{files}</ul>"
    )


def _commands(
    command: Command, rows: list[ShardRow], count: int, squeue: bool, manifest: Manifest | None
) -> str:
    words = shlex.join(command.words)
    # A shard of an array over a manifest is its segment: by hand, the same segment.
    reads = f" --manifest {shlex.quote(manifest.path)}" if manifest is not None else ""
    waiting = [r.shard for r in rows if r.to_run and r.queue]
    missing = [r for r in rows if r.to_run and not r.queue]
    lines = [f"cd {shlex.quote(command.invoked_in)}"]
    if not missing:
        lines.append("# every shard is complete or still queued: nothing to resubmit")
    else:
        shards = ", ".join(str(r.shard) for r in missing)
        check = "" if squeue else " --no-queue-check"
        to_run = sum(r.to_run for r in missing)
        lines.append(f"# to run: {to_run} item{'s' * (to_run != 1)} in shards {shards}")
        lines.append(f"dispatch submit --resubmit{check} --array {count} -- {words}")
        lines.append("# or one shard here, without SLURM:")
        lines.append(f"dispatch {words}{reads} --shard {missing[0].shard}/{count}")
    if waiting:
        lines.append(f"# still queued or running: shards {', '.join(map(str, waiting))}")
    if manifest is not None:
        lines.append("# input added since the manifest was made, as new shards:")
        lines.append(f"dispatch submit --resubmit --replan --array {count} -- {words}")
    lines.append("# this page again:")
    lines.append(f"dispatch status --array {count} --html PAGE.html -- {words}")
    return f'<pre id="commands">{escape(chr(10).join(lines))}</pre>'


def status_page(
    command: Command,
    count: int,
    rows: list[ShardRow],
    records: Records,
    squeue: bool,
    manifest: Manifest | None = None,
) -> str:
    """The whole page, as text (`manifest`: the one the array reads, if any)."""
    items, done = sum(r.items for r in rows), sum(r.done for r in rows)
    complete = sum(1 for r in rows if not r.to_run)
    failed = sum(int((rec.get("counts") or {}).get("failed") or 0) for _, rec in records.values())
    running = sum(1 for r in rows if r.outcome == "running")
    rates = throughput([curve(rec) for _, rec in records.values()])
    chart = _chart(rates) if rates else '<p class="empty">No progress samples yet.</p>'
    roots = ", ".join(command.output_roots)
    where = f"outputs <code>{escape(roots)}</code> · " if roots else ""
    if manifest is not None:
        made = escape(str(manifest.header.get("made", "?")))
        where += (
            f"items from the manifest <code>{escape(manifest.path)}</code> made {made} "
            "(input added since: --replan) · "
        )
    totals = [
        (items, "items"),
        (done, "done"),
        (items - done, "to run"),
        (failed, "failed in last runs"),
        (f"{complete}/{count}", "shards complete"),
        (running, "running"),
    ]
    cards = "".join(
        f'<div class="total"><b>{escape(str(v))}</b><span>{t}</span></div>' for v, t in totals
    )
    head = (
        "<tr><th>shard</th><th>progress</th><th>items</th><th>done</th><th>to run</th>"
        "<th>failed</th><th>last run</th><th>job, queue</th><th>last heard</th>"
        "<th>settled over the run</th></tr>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(command.task_name)}: {done} of {items} done</title>
<style>{_STYLE}</style></head><body>
<h1>{escape(command.task_name)}</h1>
<p class="meta">{where}{count} shards · written {escape(now_text().replace("T", " "))}
by <code>dispatch status</code> · queue {"asked" if squeue else "not answering"}</p>
<div class="totals">{cards}</div>
{_bar(done, items, big=True)}
<h2>Shards</h2>
<table id="shards">{head}{"".join(_shard_rows(rows, records, squeue))}</table>
<h2>Throughput over time</h2>
{chart}
<h2>Failures by kind</h2>
{_failures(records)}
<h2>Commands</h2>
{_commands(command, rows, count, squeue, manifest)}
</body></html>
"""
