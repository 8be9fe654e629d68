"""The case lifecycle (案件流程) as one pure state machine: which action may be taken from which
state, by whom, with what, and the state it leads to. The rules are policy data
(``schemas/policy/cases.yaml``); ``sinks.records.case_store`` applies a transition with the
case's row version, so two reviewers cannot both act on one case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RULES_PATH = Path(__file__).resolve().parent / "policy" / "cases.yaml"
FIELDS = ("reason_code", "note", "fine_cny")  # what an action may need


class CaseRefused(ValueError):
    """An action the case's life does not allow, with a reason code for people and logs."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Action:
    name: str
    roles: tuple[str, ...]
    sources: tuple[str, ...]
    target: str
    needs: tuple[str, ...]
    non_local: bool
    label: str


@dataclass(frozen=True)
class CaseRules:
    version: str
    states: dict[str, str]
    initial: str
    final: tuple[str, ...]
    actions: dict[str, Action]
    decline_reasons: dict[str, str]
    note_required_for: tuple[str, ...]
    penalty_parties: dict[str, str]  # field: label, the 一超四罚 parties of a decision
    party_max_chars: int
    note_required_below_schedule: bool


@dataclass(frozen=True)
class Transition:
    """What an allowed action does: from and to, and the fields it records."""

    action: str
    from_state: str
    to_state: str
    reason_code: str | None
    note: str | None
    fine_cny: int | None
    parties: dict[str, str] = field(default_factory=dict)  # the 一超四罚 parties named


def load_case_rules(path: Path = RULES_PATH) -> CaseRules:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    states = dict(data["states"])
    actions = {}
    for name, a in data["actions"].items():
        action = Action(
            name,
            tuple(a["roles"]),
            tuple(a["from"]),
            a["to"],
            tuple(a.get("needs", ())),
            bool(a.get("non_local", False)),
            a["label"],
        )
        unknown = {*action.sources, action.target} - set(states)
        if unknown or not set(action.needs) <= set(FIELDS):
            raise ValueError(f"{path}: action {name!r} names unknown states or fields")
        actions[name] = action
    rules = CaseRules(
        data["version"],
        states,
        data["initial"],
        tuple(data["final"]),
        actions,
        dict(data["decline_reasons"]),
        tuple(data.get("note_required_for", ())),
        dict(data.get("penalty_parties", {})),
        int(data.get("party_max_chars", 100)),
        bool(data.get("note_required_below_schedule", True)),
    )
    if rules.initial not in states or not set(rules.final) <= set(states):
        raise ValueError(f"{path}: initial or final states are not states")
    return rules


def transition(
    rules: CaseRules,
    state: str,
    is_local: bool,
    action: str,
    role: str,
    fields: dict[str, Any],
    schedule_fine_cny: int | None = None,
) -> Transition:
    """The transition ``action`` makes of a case in ``state``, or ``CaseRefused``.
    ``schedule_fine_cny``: the fine schedule's amount for the case's weighing (penalties)."""
    a = rules.actions.get(action)
    if a is None:
        raise CaseRefused("unknown_action", f"没有此操作：{action!r}")
    if role not in a.roles:
        raise CaseRefused("not_allowed", f"{role} 不能执行「{a.label}」")
    if state not in a.sources:
        label = rules.states.get(state, state)
        raise CaseRefused("wrong_state", f"案件当前为「{label}」，不能执行「{a.label}」")
    if a.non_local and is_local:
        raise CaseRefused("local_vehicle", "本地车辆的案件不抄告")
    reason, note, fine = fields.get("reason_code"), fields.get("note"), fields.get("fine_cny")
    note = note.strip() if isinstance(note, str) else note
    for need, value in (("reason_code", reason), ("note", note), ("fine_cny", fine)):
        if need in a.needs and value in (None, ""):
            raise CaseRefused(f"missing_{need}", f"「{a.label}」需要填写 {need}")
    if reason is not None and action == "decline" and reason not in rules.decline_reasons:
        raise CaseRefused("unknown_reason", f"未知的不予立案理由：{reason!r}")
    if action == "decline" and reason in rules.note_required_for and not note:
        raise CaseRefused("missing_note", "理由为「其他」时须填写说明")
    if fine is not None and (isinstance(fine, bool) or not isinstance(fine, int) or fine <= 0):
        raise CaseRefused("bad_fine", f"罚款金额应为正整数（元），而不是 {fine!r}")
    if note is not None and not isinstance(note, str):
        raise CaseRefused("bad_note", "说明应为文字")
    parties = {}
    if "fine_cny" in a.needs:
        _check_fine(rules, fine, note, schedule_fine_cny)
        parties = _parties(rules, fields)
    return Transition(
        action,
        state,
        a.target,
        reason if "reason_code" in a.needs else None,
        note or None,
        fine if "fine_cny" in a.needs else None,
        parties,
    )


def _check_fine(rules: CaseRules, fine: int, note: str | None, schedule: int | None) -> None:
    """A penalty is at most what the policy's fine schedule sets for the weighing's excess
    (62号令 第四十三条); less is a discretionary reduction, whose reason is written down."""
    if schedule is None or schedule <= 0:
        raise CaseRefused("no_schedule", "该称重按罚款标准无应处罚款，不能作出罚款决定")
    if fine > schedule:
        raise CaseRefused("above_schedule", f"罚款 {fine} 元超过罚款标准的 {schedule} 元")
    if fine < schedule and rules.note_required_below_schedule and not note:
        raise CaseRefused("missing_note", f"罚款低于标准（{schedule} 元）时须写明减轻理由")


def _parties(rules: CaseRules, fields: dict[str, Any]) -> dict[str, str]:
    parties = {}
    for name, label in rules.penalty_parties.items():
        value = fields.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or len(value.strip()) > rules.party_max_chars:
            raise CaseRefused(
                "bad_party", f"「{label}」应为不超过 {rules.party_max_chars} 字的文字"
            )
        parties[name] = value.strip()
    return parties
