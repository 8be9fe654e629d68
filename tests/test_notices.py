"""The 违法行为通知书: rendered from a case the project's own pipeline decided, it states the
facts, the device's certificate and the evidence record, escapes what cameras and people wrote,
and prints to a one-page PDF whose hash is the hash of the bytes kept."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import markupsafe
import pytest
import weasyprint

from schemas.plate_grammar import is_trailer
from schemas.policy import load_policy
from sim.config import SimConfig
from sim.traffic import CitySimulator
from sinks.evidence import EvidenceChain, evidence_body, parse
from sinks.records.notices import (
    Notice,
    make_notice,
    notice_number,
    render_notice_html,
    render_notice_pdf,
)
from streams.stages import decide_with_support, measure_passages

AUTHORITY = "绍兴市交通运输局"
ISSUED_BY = "审核员 王五"
CHINA = dt.timezone(dt.timedelta(hours=8))  # independent of the module's zoneinfo


def plain(html):
    """The document's text as read on paper: the markup gone."""
    return re.sub(r"<[^>]+>", "", html)


def served_time():
    return dt.datetime(2026, 11, 22, 9, 30, tzinfo=CHINA)


@pytest.fixture(scope="module")
def decided(registry):
    """The enforceable over-limit verdicts of a simulated day, with their evidence bodies."""
    traffic = CitySimulator(SimConfig(vehicles=400, seed=21), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    verdicts, support = decide_with_support(
        measured, traffic.reads, registry, load_policy(registry.policy)
    )
    out = [
        (v, evidence_body(v, s, registry))
        for v, s in zip(verdicts, support, strict=True)
        if v["enforceable"] and v["verdict"] == "overlimit"
    ]
    assert out
    return out


def as_case(verdict, case_id=7):
    """A verdict wrapped as ``CaseStore.case`` returns it, filed and ready to notify."""
    weighed_at = dt.datetime.fromtimestamp(verdict["ts_us"] / 1e6, dt.UTC)
    return {
        "case_id": case_id,
        "passage_id": verdict["passage_id"],
        "state": "filed",
        "version": 2,
        "plate": verdict["plate_front"] or None,
        "site_id": verdict["site_id"],
        "is_local": verdict["local"],
        "weighed_at": weighed_at,
        "opened_at": weighed_at,
        "updated_at": weighed_at,
        "reviewer": "王五",
        "reason_code": None,
        "fine_cny": None,
        "verdict": verdict,
        "events": [],
    }


def sealed(verdict, body):
    """The evidence record body as the case store reads it back, with its digest."""
    (link,) = EvidenceChain(b"test-evidence-key").extend([(verdict, body)])
    digest, _, _, parsed = parse(link.line)
    return {**parsed, "digest": digest}


@pytest.fixture(scope="module")
def combination(decided):
    """The longest record: the most axles, a trailer's own plate where one was read."""
    return max(
        decided, key=lambda vb: (len(vb[0]["axle_loads_kg"]), is_trailer(vb[0]["plate_rear"]))
    )


@pytest.fixture(scope="module")
def issued_at(combination):
    weighed = dt.datetime.fromtimestamp(combination[0]["ts_us"] / 1e6, dt.UTC)
    return weighed + dt.timedelta(days=2, hours=3)


@pytest.fixture(scope="module")
def served(combination, issued_at):
    verdict, body = combination
    evidence = sealed(verdict, body)
    return make_notice(as_case(verdict), evidence, issued_at, ISSUED_BY, AUTHORITY), evidence


def test_the_notice_states_the_party_the_facts_and_the_evidence(combination, served):
    verdict, _ = combination
    notice, evidence = served
    text = notice.html
    assert "违法行为通知书" in text and notice.notice_no in text
    assert verdict["plate_front"] in text
    if is_trailer(verdict["plate_rear"]) and verdict["plate_rear"] != verdict["plate_front"]:
        assert "挂车号牌" in text and verdict["plate_rear"] in text
    assert verdict["vehicle_class"] in text and f"{verdict['axle_count']} 轴" in text
    for kg in ("gvw_kg", "limit_kg", "excess_kg"):
        assert f"{verdict[kg]:.1f} 千克" in text
    assert f"{verdict['overload_pct']:.2f}%" in text
    for n, load in enumerate(verdict["axle_loads_kg"], start=1):
        assert f"第 {n} 轴" in text and f"{load:.1f}" in text
    weighed = dt.datetime.fromtimestamp(verdict["ts_us"] / 1e6, CHINA)
    assert weighed.strftime("%Y年%m月%d日 %H:%M:%S") + "（北京时间）" in text
    assert evidence["digest"] in text and f"第 {evidence['seq']} 条" in text
    device = evidence["device"]
    assert device["cert_no"] and device["cert_no"] in text
    assert f"{device['cert_valid_from']} 至 {device['cert_valid_to']}" in text
    assert verdict["policy_version"] in text
    assert f"{verdict['site_id']}，{verdict['lane']} 车道，" in text
    assert AUTHORITY in text and ISSUED_BY in text


def test_the_notice_gives_the_legal_basis_and_the_rights_and_only_proposes_a_fine(
    combination, served
):
    verdict, _ = combination
    text = plain(served[0].html)
    assert "《公路安全保护条例》第三十三条" in text
    assert "第六十四条" in text
    assert "《超限运输车辆行驶公路管理规定》（交通运输部令2016年第62号）第四十三条" in text
    assert "第四十四条" in text and "陈述、申辩" in text and "听证" in text
    assert "自收到本通知书之日起十五日内" in text
    assert verdict["fine_cny"]
    assert f"拟处罚款人民币 {verdict['fine_cny']} 元（拟处金额" in text
    assert "以处罚决定书为准" in text
    unfined = {**verdict, "fine_cny": None}
    other = render_notice_html(as_case(unfined), None, served_time(), ISSUED_BY, AUTHORITY)
    assert "拟处罚款" not in other


def test_the_number_and_the_times_are_china_days(combination):
    verdict, _ = combination
    late = {**as_case(verdict, case_id=123), "site_id": "SX-A"}
    late["weighed_at"] = dt.datetime(2026, 3, 1, 17, 30, tzinfo=dt.UTC)  # 01:30 on 2 March
    assert notice_number(late) == "ZC-SX-A-20260302-000123"
    text = render_notice_html(
        late, None, dt.datetime(2026, 3, 3, 16, 5, tzinfo=dt.UTC), ISSUED_BY, AUTHORITY
    )
    assert "2026年03月02日 01:30:00（北京时间）" in text
    assert "发出时间：2026年03月04日 00:05:00（北京时间）" in text
    assert re.fullmatch(r"ZC-.+-\d{8}-\d{6}", notice_number(as_case(verdict)))


def test_a_naive_time_is_refused_rather_than_guessed(combination):
    verdict, body = combination
    with pytest.raises(ValueError, match="timezone-aware"):
        render_notice_html(
            as_case(verdict), sealed(verdict, body), dt.datetime(2026, 1, 1), "x", AUTHORITY
        )


def test_what_cameras_and_people_wrote_is_escaped(combination, issued_at):
    verdict, body = combination
    plate = '<script>alert("浙")</script>'
    site = 'S&"<b>1'
    hostile = {**verdict, "plate_front": plate, "site_id": site}
    case = {**as_case(hostile), "plate": plate}
    evidence = sealed(verdict, body)
    evidence["device"] = {**evidence["device"], "cert_no": "<i>cert</i>"}
    text = render_notice_html(case, evidence, issued_at, "<b>officer</b>", "局&<u>")
    for raw in (plate, site, "<i>cert</i>", "<b>officer</b>", "局&<u>"):
        assert raw not in text
        assert str(markupsafe.escape(raw)) in text
    assert "<script>" not in text and "<b>" not in text


def test_the_pdf_is_one_a4_page_and_its_hash_is_the_hash_of_the_bytes(
    served, combination, issued_at
):
    notice, evidence = served
    assert isinstance(notice, Notice)
    assert notice.pdf.startswith(b"%PDF-")
    assert notice.sha256 == hashlib.sha256(notice.pdf).hexdigest()
    pages = weasyprint.HTML(string=notice.html).render().pages
    assert len(pages) == 1
    assert (round(pages[0].width * 0.2646), round(pages[0].height * 0.2646)) == (210, 297)  # mm
    # kept as served and checked later: the same case rendered and printed again is the same
    # document, byte for byte
    assert render_notice_pdf(notice.html) == notice.pdf
    verdict, _ = combination
    assert make_notice(as_case(verdict), evidence, issued_at, ISSUED_BY, AUTHORITY) == notice


def test_a_notice_without_its_evidence_record_says_so(combination, issued_at):
    verdict, _ = combination
    notice = make_notice(as_case(verdict), None, issued_at, ISSUED_BY, AUTHORITY)
    assert "证据记录缺失" in notice.html
    assert verdict["evidence_hash"] in notice.html  # the verdict's own, in the record's place
    assert "证据链序号" not in notice.html
    assert notice.pdf.startswith(b"%PDF-")
    assert len(weasyprint.HTML(string=notice.html).render().pages) == 1


def test_every_enforceable_case_of_the_day_fits_one_page(decided, issued_at):
    for i, (verdict, body) in enumerate(decided):
        text = render_notice_html(
            as_case(verdict, i), sealed(verdict, body), issued_at, ISSUED_BY, AUTHORITY
        )
        assert len(weasyprint.HTML(string=text).render().pages) == 1, verdict["passage_id"]
