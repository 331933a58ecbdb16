"""Outputs that never lie and never escape their root.

Results are written under a staging name beside their final path (hidden, with the same
extension: `a/b.json` is staged as `a/.b.dispatch-part-<token>.json`) and renamed into
place only after the item succeeded, so a killed run leaves nothing a finish check would
accept. The token (process id, random hex drawn once per process, and a count of its
attempts) is new for every attempt: two runs writing the same item at once each commit
only their own complete bytes, and one run's clean-up never deletes the file another run
is writing. Leftovers of killed attempts are found by
name (`is_staging_name`) and removed under the item's claim (`dispatcher.outputs.claims`).
Existence checks read one directory listing per output directory and reuse it. A run
alone on its items (`lease`: no other run that may touch them holds the output root)
commits without per-item claims: a staging name and a rename per output, nothing more.

One module each: `paths` (confinement, roots), `names` (staging and leftover names),
`leftovers` (their removal), `claiming` (an item's claim for a block), `lease` (a run's
presence at its output roots, and whether it is alone there), `staging` (staged
writes and their commit, `atomic_write`), `listing` (listings for done checks). This
package exports what importers use from all of them.
"""

from __future__ import annotations

from dispatcher.outputs.claiming import Claimed, DoneElsewhere, claimed, claimed_all
from dispatcher.outputs.lease import RunLease, alone_in, alone_under, work_alone
from dispatcher.outputs.leftovers import (
    clear_abandoned,
    clear_leftovers,
    remove_leftovers,
    remove_path,
)
from dispatcher.outputs.listing import ListingIndex
from dispatcher.outputs.names import (
    RETIRED_SUFFIX,
    STAGING_SUFFIX,
    attempt_token,
    is_staging_name,
    leftover_final,
    retired_path,
    staging_path,
)
from dispatcher.outputs.paths import (
    OutputOutsideRoot,
    confine,
    forget_folders,
    hidden_beside,
    is_inside,
    root_overlaps,
    unsafe_reason,
    unwritable_reason,
)
from dispatcher.outputs.staging import (
    MissingOutput,
    OutputConflict,
    Staged,
    atomic_write,
    commit,
    staged,
)

__all__ = [
    "forget_folders",
    "RETIRED_SUFFIX",
    "STAGING_SUFFIX",
    "Claimed",
    "RunLease",
    "alone_in",
    "alone_under",
    "work_alone",
    "DoneElsewhere",
    "ListingIndex",
    "MissingOutput",
    "OutputConflict",
    "OutputOutsideRoot",
    "Staged",
    "atomic_write",
    "attempt_token",
    "claimed",
    "claimed_all",
    "clear_abandoned",
    "clear_leftovers",
    "commit",
    "confine",
    "hidden_beside",
    "is_inside",
    "is_staging_name",
    "leftover_final",
    "remove_leftovers",
    "remove_path",
    "retired_path",
    "root_overlaps",
    "staged",
    "staging_path",
    "unsafe_reason",
    "unwritable_reason",
]
