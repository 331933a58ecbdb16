"""A row task: each JSONL row in, one cleaned row out, packed into gzip part files.

    dispatch tasks/text_rows.py CleanRows --mixin input=tasks/data/jsonl output=out/rows
    dispatch tasks/text_rows.py CleanRows --rows-per-item 50000 --mixin input=/data/jsonl output=/data/rows

Without `--rows-per-item` each input file makes one part (`out/rows/chat.jsonl.jsonl.gz`);
with it, each range of about N rows does (`chat.jsonl@00000-of-00040.jsonl.gz`), so a
file of 100M rows makes 100M / N files, not 100M. See docs/rows.md.
"""

from dispatcher import Task
from templates import InputJsonlRows, OutputPacked, cpu_task


@cpu_task(input_mode=InputJsonlRows(), output_mode=OutputPacked(compression="gzip"))
class CleanRows(Task):
    """Collapse whitespace in `text` and count its words; rows left empty are dropped."""

    def process(self, input, row, line):
        text = " ".join(str(row.get("text", "")).split())
        if not text:
            return None  # left out of the part
        return {**row, "text": text, "words": len(text.split())}
