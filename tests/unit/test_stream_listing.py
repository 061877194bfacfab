"""Stream listings: the name range a selection scans, and its residual category check."""

from __future__ import annotations

import pytest

from kronika.errors import ValidationError
from kronika.store.listing import CEILING, StreamSelection


def test_a_prefix_becomes_a_half_open_range_of_names() -> None:
    selection = StreamSelection.checked(prefix="order-")
    assert (selection.low, selection.high) == ("order-", "order.")
    assert selection.matches("order-1") and selection.matches("order-")
    assert not selection.matches("order") and not selection.matches("order.1")


def test_the_range_skips_surrogates_and_the_largest_character() -> None:
    assert StreamSelection.checked(prefix="a\ud7ff").high == "a\ue000"
    assert StreamSelection.checked(prefix="a\U0010ffff").high == "b"
    assert StreamSelection.checked(prefix="\U0010ffff").high == CEILING
    assert StreamSelection.checked().high == CEILING
    assert CEILING > "\U0010ffff" * 256


def test_a_category_is_its_name_and_names_before_a_dash() -> None:
    selection = StreamSelection.checked(category="order")
    assert (selection.low, selection.high) == ("order", "order.")
    listed = [
        n for n in ["order", "order x", "order-1", "order.x", "orders-1"] if selection.matches(n)
    ]
    assert listed == ["order", "order-1"]


def test_the_cursor_folds_into_the_lower_bound() -> None:
    selection = StreamSelection.checked(category="order", after="order-1")
    assert selection.start == "order-1\x00"
    assert StreamSelection.checked(category="order", after="a").start == "order"
    assert not selection.matches("order-1") and selection.matches("order-10")


def test_filters_that_cannot_meet_select_nothing() -> None:
    selection = StreamSelection.checked(prefix="p", category="order")
    assert selection.low >= selection.high


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"category": "order-1"}, "category"),
        ({"category": ""}, "category"),
        ({"prefix": "a\x00"}, "prefix"),
        ({"after": 7}, "after"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_arguments_name_the_field(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        StreamSelection.checked(**arguments)
    assert [f for f, _ in info.value.errors] == [field]
