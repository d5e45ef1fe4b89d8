"""ringctl's argument reading: a repair range whose left token is negative, written with a space."""

from __future__ import annotations

from node.ringctl import _join_range_values, build_parser


def test_a_negative_left_token_after_range_is_its_value_not_an_option() -> None:
    for argv in (["repair", "--range", "-123:456", "ks"], ["repair", "--range=-123:456", "ks"],
                 ["repair", "ks", "--range", "-9223372036854775808:-5"]):
        args = build_parser().parse_args(_join_range_values(argv))
        assert args.command == "repair" and args.range.endswith(("456", "-5")) and args.range.startswith("-")
    # Only --range's value is joined; other arguments pass through as given.
    assert _join_range_values(["put", "ks", "t", "-1:2", "c=1"]) == ["put", "ks", "t", "-1:2", "c=1"]
