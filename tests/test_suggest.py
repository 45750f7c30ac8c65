"""Did-you-mean: the edit distance behind every suggestion, and which candidates are offered."""

from __future__ import annotations

import itertools
from functools import cache

import pytest

from kzoo.suggest import closest, edit_distance


def _reference_distance(a: str, b: str) -> int:
    """Optimal string alignment distance, written top-down from its definition."""

    @cache
    def d(i: int, j: int) -> int:  # distance between a[:i] and b[:j]
        if i == 0 or j == 0:
            return i + j
        best = min(
            d(i - 1, j) + 1,  # delete a[i - 1]
            d(i, j - 1) + 1,  # insert b[j - 1]
            d(i - 1, j - 1) + (a[i - 1] != b[j - 1]),  # keep or substitute
        )
        if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
            best = min(best, d(i - 2, j - 2) + 1)  # swap two neighbours
        return best

    return d(len(a), len(b))


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("vgg199", "vgg19", 1),  # a deletion
        ("vgg19", "vgg199", 1),  # an insertion
        ("vgg19", "vgg16", 1),  # a substitution
        ("PM2", "MP2", 1),  # a swap of neighbours
        ("abcd", "ab", 2),  # two deletions cost two
        ("ab", "abcd", 2),
        ("aaa", "a", 2),
        ("abc", "", 3),
        ("", "abc", 3),
        ("", "", 0),
        ("resnet", "vgg19", 6),
    ],
)
def test_edit_distance_counts_each_kind_of_edit_once(a, b, distance):
    assert edit_distance(a, b) == distance


def test_edit_distance_agrees_with_its_definition_on_every_short_string():
    words = ["".join(w) for n in range(5) for w in itertools.product("abc", repeat=n)]
    wrong = [
        (a, b)
        for a, b in itertools.product(words, repeat=2)
        if edit_distance(a, b) != _reference_distance(a, b)
    ]
    assert wrong == []


def test_a_far_name_gets_no_suggestion():
    # names up to five characters allow one edit; "ab" -> "cd" needs two
    assert closest("ab", ["cd"]) == []
    assert closest("vgg19", ["vgg2"]) == []
    assert closest("vgg19", ["vgg1"]) == ["vgg1"]


def test_a_long_name_allows_a_third_of_its_length_in_edits():
    assert closest("resnet", ["resn"]) == ["resn"]  # 6 characters: two edits
    assert closest("resnet", ["res"]) == []


def test_at_most_three_suggestions_nearest_first_then_by_name():
    candidates = ["vgg18", "vgg11", "vgg16", "vgg19x", "vgg1"]  # each one edit from vgg19
    assert closest("vgg19", candidates) == ["vgg1", "vgg11", "vgg16"]
    assert closest("vgg19", candidates, max_results=5) == sorted(candidates)
    assert closest("resnet", ["rasnat", "zesnet"]) == ["zesnet", "rasnat"]  # one edit, then two


def test_the_name_itself_and_duplicates_are_not_suggested():
    assert closest("vgg19", iter(["vgg19", "vgg16", "vgg16"])) == ["vgg16"]


def test_only_case_differs_is_still_suggested():
    assert closest("Vgg19", ["vgg19"]) == ["vgg19"]
