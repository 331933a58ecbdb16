"""Items from a store's listing: the walk's own rules over object keys."""

from __future__ import annotations

from templates.walk import listed

KEYS = [
    "b/x.dat",
    "a/y.dat",
    "a/.hidden.dat",
    "a/deep/z.dat",
    "a/.y.dispatch-part-12-ab0_cd.dat/part-0.bin",  # a staging prefix
    "a/.y.dat.dispatch-lock",  # a claim
    "c/.dispatch-complete",  # a folder output's commit marker
    ".dispatch-run.Task",  # a provenance record
]


def test_files_from_a_listing_are_sorted_and_skip_hidden_names():
    assert listed(KEYS) == ["a/deep/z.dat", "a/y.dat", "b/x.dat"]


def test_the_dispatchers_own_names_are_never_items_even_with_hidden():
    assert listed(KEYS, hidden=True) == ["a/.hidden.dat", "a/deep/z.dat", "a/y.dat", "b/x.dat"]


def test_folders_at_a_depth_are_the_prefixes_that_hold_objects():
    assert listed(KEYS, min_depth=1, max_depth=1, kind="dir") == ["a", "b"]
    assert listed(KEYS, min_depth=2, max_depth=2, kind="dir") == ["a/deep"]
    assert listed(KEYS, min_depth=2, max_depth=2, kind="any") == ["a/deep", "a/y.dat", "b/x.dat"]


def test_a_path_test_sees_relative_keys():
    assert listed(KEYS, accept_path=lambda k: k.endswith("x.dat")) == ["b/x.dat"]
