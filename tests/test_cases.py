"""The case state machine (schemas.cases): who may do what from which state, with what."""

from __future__ import annotations

import pytest

from schemas.cases import CaseRefused, load_case_rules, transition

RULES = load_case_rules()


def refused(state, action, role="reviewer", local=True, schedule=None, **fields) -> str:
    with pytest.raises(CaseRefused) as exc:
        transition(RULES, state, local, action, role, fields, schedule)
    return exc.value.reason


def test_a_case_goes_from_review_to_closure():
    path = [
        ("pending_review", "file", {}, "filed"),
        ("filed", "notify", {}, "notified"),
        ("notified", "statement", {"note": "驾驶员称货物为整体"}, "statement"),
        ("statement", "penalize", {"fine_cny": 1000}, "penalized"),
        ("penalized", "close", {}, "closed"),
    ]
    for state, action, fields, to in path:
        assert transition(RULES, state, True, action, "reviewer", fields, 1000).to_state == to
    assert set(RULES.final) == {"closed", "not_filed"}


def test_only_a_reviewer_files_and_nobody_skips_review():
    assert refused("pending_review", "file", role="command_centre") == "not_allowed"
    assert refused("pending_review", "file", role="unit") == "not_allowed"
    assert refused("pending_review", "file", role="system") == "not_allowed"
    assert refused("pending_review", "notify") == "wrong_state"
    assert refused("pending_review", "penalize", fine_cny=500) == "wrong_state"
    assert refused("not_filed", "file") == "wrong_state"
    assert refused("closed", "notify") == "wrong_state"


def test_declining_needs_a_known_reason_and_other_needs_a_note():
    assert refused("pending_review", "decline") == "missing_reason_code"
    assert refused("pending_review", "decline", reason_code="bad luck") == "unknown_reason"
    assert refused("pending_review", "decline", reason_code="other") == "missing_note"
    assert refused("pending_review", "decline", reason_code="other", note="  ") == "missing_note"
    t = transition(
        RULES, "pending_review", True, "decline", "reviewer", {"reason_code": "plate_mismatch"}
    )
    assert (t.to_state, t.reason_code) == ("not_filed", "plate_mismatch")


def test_a_penalty_needs_a_positive_amount():
    assert refused("notified", "penalize") == "missing_fine_cny"
    for bad in (0, -5, 1.5, "1000", True):
        assert refused("notified", "penalize", fine_cny=bad, schedule=1000) == "bad_fine"


def test_a_penalty_is_at_most_the_schedule_and_a_reduction_is_explained():
    assert refused("notified", "penalize", fine_cny=500) == "no_schedule"
    assert refused("notified", "penalize", fine_cny=500, schedule=0) == "no_schedule"
    assert refused("notified", "penalize", fine_cny=1500, schedule=1000) == "above_schedule"
    assert refused("notified", "penalize", fine_cny=500, schedule=1000) == "missing_note"
    t = transition(
        RULES,
        "statement",
        True,
        "penalize",
        "reviewer",
        {"fine_cny": 500, "note": "首次违法，主动卸载", "driver_name": " 张三 "},
        1000,
    )
    assert (t.fine_cny, t.note, t.parties) == (500, "首次违法，主动卸载", {"driver_name": "张三"})


def test_the_penalty_parties_are_short_text():
    fields = {"fine_cny": 1000}
    assert refused("notified", "penalize", schedule=1000, driver_name=7, **fields) == "bad_party"
    long_name = "某" * (RULES.party_max_chars + 1)
    assert (
        refused("notified", "penalize", schedule=1000, source_unit=long_name, **fields)
        == "bad_party"
    )
    assert set(RULES.penalty_parties) >= {"driver_name", "transport_company", "source_unit"}


def test_only_a_non_local_case_is_handed_over():
    assert refused("filed", "hand_over", local=True) == "local_vehicle"
    t = transition(RULES, "filed", False, "hand_over", "system", {})
    assert t.to_state == "handed_over"
    assert refused("handed_over", "answered", local=False) == "missing_note"


def test_unknown_actions_are_refused():
    assert refused("pending_review", "delete") == "unknown_action"


def test_every_decline_reason_and_state_has_a_chinese_label():
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in v) for v in RULES.states.values())
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in v) for v in RULES.decline_reasons.values())
