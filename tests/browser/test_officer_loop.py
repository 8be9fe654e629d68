"""The officer loop in a real browser (Chromium, headless): an over-limit truck weighed at a WIM
site becomes an order on the officer page of the unit the plan names — and on no other unit's
page — the officer accepts, arrives and reports the outcome with a static re-weigh, and the
command-centre dashboard's KPIs change accordingly; a page that loses its connection catches up
on what it missed."""

from __future__ import annotations

import http.client
import time

import pytest

from schemas.units import US
from streams.dispatch import COMMAND_CENTRE, plan_interception
from tests.browser.conftest import publish_traffic

# a POST from inside a page (with its cookie); answers the HTTP status
POST = """async ([url, body]) => (await fetch(url, {method: 'POST',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})).status"""


@pytest.fixture(scope="module")
def pages(live, browser, registry):
    """A logged-in page per unit (each in its own browser context: its own cookie) and the
    dashboard, all open before any traffic flows."""
    opened = {}
    for who in ["command", *registry.units]:
        context = browser.new_context(viewport={"width": 390, "height": 844})
        page = context.new_page()
        page.goto(live.url(who))
        opened[who] = page
    for unit_id, page in opened.items():
        if unit_id != "command":
            page.wait_for_function("window.zc && window.zc.connected === true")
    opened["command"].wait_for_function("window.zc && window.zc.refreshes > 0")
    yield opened
    for page in opened.values():
        page.context.close()


@pytest.fixture(scope="module")
def unit_orders(live, pages, registry):
    """Publish traffic; the first orders to units (not the command centre)."""
    # a city whose trucks over the limit pass sites of more than one unit
    live.traffic = publish_traffic(live, registry, seed=9)

    def to_units():
        """orders to at least two different units"""
        got = [o for o in live.orders() if o["unit_id"] != COMMAND_CENTRE]
        return got if len({o["unit_id"] for o in got}) >= 2 else None

    return live.wait(to_units, timeout_s=120)


def shown(page, order_id: str) -> bool:
    return page.evaluate("id => window.zc.orders.has(id)", order_id)


def test_the_order_reaches_the_planned_unit_and_the_loop_closes(live, pages, unit_orders, registry):
    order = unit_orders[0]
    unit = order["unit_id"]
    v = order["vehicle"]
    # the unit is the ETA-optimal one for where the truck is when the order was made
    plan = plan_interception(
        registry.sites[v["site_id"]],
        v["speed_kmh"],
        v["weighed_us"] / US,
        order["ts_us"] / US,
        registry,
        {},
    )
    assert (plan.unit_id, plan.point_id) == (unit, order["point_id"])

    page = pages[unit]
    card = page.locator(f"article[data-order='{order['order_id']}']")
    card.wait_for(timeout=10_000)
    assert order["plate"] in card.inner_text()
    assert "待接受" in card.inner_text()

    card.get_by_role("button", name="接受指令").click()
    page.wait_for_function(
        "id => window.zc.orders.get(id).status === 'accepted'", arg=order["order_id"]
    )
    assert live.order(order["order_id"])["status"] == "accepted"
    card.get_by_role("button", name="已到达拦截点").click()
    page.wait_for_function(
        "id => window.zc.orders.get(id).status === 'arrived'", arg=order["order_id"]
    )
    static_kg = round(v["gvw_kg"] * 0.97)
    card.locator("select[data-field=outcome]").select_option("intercepted")
    card.locator("input[data-field=static_gvw_kg]").fill(str(static_kg))
    card.get_by_role("button", name="提交处置结果").click()
    page.wait_for_function(
        "id => window.zc.orders.get(id).status === 'closed'", arg=order["order_id"]
    )
    closed = live.order(order["order_id"])
    assert closed["outcome"] == "intercepted"
    assert closed["reweigh"]["static_gvw_kg"] == static_kg
    assert closed["reweigh"]["confirms"] == (static_kg > v["limit_kg"])
    assert page.locator("#done").get_by_text("已拦截").count() >= 1

    # the dashboard: one interception, its yield, the device's WIM-vs-static drift
    dash = pages["command"]
    dash.locator("[data-tile=intercepted] .value").filter(has_text="1").wait_for(timeout=15_000)
    assert "100" in dash.locator("[data-tile=yield] .value").inner_text()
    assert dash.locator("#drift").get_by_text(v["device_id"]).count() == 1
    assert dash.locator("[data-tile=accept_s] .value").inner_text().strip() != "—"


def test_a_unit_never_sees_another_units_order(live, pages, unit_orders, registry):
    for order in unit_orders:
        for unit_id in registry.units:
            if unit_id == order["unit_id"]:
                pages[unit_id].wait_for_function(
                    "id => window.zc.orders.has(id)", arg=order["order_id"]
                )
            else:
                assert not shown(pages[unit_id], order["order_id"]), (unit_id, order["order_id"])
    # nor can it act on one: to another unit the order does not exist
    order = unit_orders[0]
    other = next(u for u in registry.units if u != order["unit_id"])
    status = pages[other].evaluate(
        POST, [f"/officer/orders/{order['order_id']}", {"action": "accept"}]
    )
    assert status == 404
    # and without a token, nothing at all
    anonymous = pages["command"].context.browser.new_context()
    try:
        r = anonymous.request.get(f"http://127.0.0.1:{live.web_port}/officer/events")
        assert r.status == 401
    finally:
        anonymous.close()


def test_a_dropped_connection_catches_up_on_what_it_missed(live, pages, unit_orders):
    # an order still open, of a unit whose page then loses its network
    order = next(o for o in unit_orders if live.order(o["order_id"])["status"] == "open")
    page = pages[order["unit_id"]]
    page.wait_for_function("id => window.zc.orders.has(id)", arg=order["order_id"])
    page.context.set_offline(True)
    # Chromium's offline mode leaves an open stream flowing: end it as a lost network does,
    # silently (no error event); the page's watchdog hears nothing for 25 s and reconnects
    page.evaluate("() => window.zc.source.close()")
    try:
        page.wait_for_function("window.zc.connected === false", timeout=40_000)
        # meanwhile the command centre cancels the order
        status = pages["command"].evaluate(
            POST,
            [
                f"/dashboard/orders/{order['order_id']}",
                {"action": "outcome", "outcome": "cancelled"},
            ],
        )
        assert status == 202
        live.wait(lambda: live.order(order["order_id"])["status"] == "closed", timeout_s=15)
        page.wait_for_timeout(1000)
        assert page.evaluate("id => window.zc.orders.get(id).status", order["order_id"]) == "open"
    finally:
        page.context.set_offline(False)
    page.wait_for_function(
        "id => window.zc.orders.get(id).status === 'closed'", arg=order["order_id"], timeout=30_000
    )
    assert page.evaluate("window.zc.connected") is True


def test_no_plate_reaches_the_worker_log(live, unit_orders):
    """Officers' reports, refusals and escalations are logged without plates (privacy)."""
    text = live.log_path.read_text(encoding="utf-8", errors="replace")
    plates = {o["plate"] for o in live.orders() if o["plate"]}
    assert plates, "no order with a plate in this run"
    assert not [p for p in plates if p in text]


def test_unidentified_weighings_name_the_likely_plate(live, unit_orders):
    """An over-limit truck with its plate covered at the site: its alert names the plates read
    at the checkpoint before the site at the predicted time, and the truck's is among them."""
    import orjson

    from schemas.plate_grammar import normalise
    from sinks import constants as K

    covered = {
        t["passage_id"]: normalise(t["plate_front"]) for t in live.traffic.truth if t["covered"]
    }
    alerts = [
        orjson.loads(live.redis.get(k)) for k in live.redis.keys(K.ALERT_KEY.format(alert_id="*"))
    ]
    unidentified = [a for a in alerts if a["reason"] == "unidentified"]
    assert unidentified, "no unidentified over-limit weighing in this run"
    named = [a for a in unidentified if covered.get(a["passage_id"]) in a["likely_plates"]]
    assert named, [(a["passage_id"], a["likely_plates"]) for a in unidentified]
    assert all("疑似车牌" in a["message"] for a in unidentified if a["likely_plates"])


def test_bypassers_raise_a_suspected_bypass(live, unit_orders):
    """Trucks read before a weigh site and then on the road around it, never at the site."""
    import orjson

    from schemas.plate_grammar import normalise
    from sinks import constants as K

    bypassers = {normalise(p) for p in live.traffic.bypassers}
    assert bypassers, "no bypasser in this run"

    def alerted():
        """suspected-bypass alerts"""
        feed = [orjson.loads(f[b"alert"]) for _, f in live.redis.xrange(K.ALERT_STREAM, "-", "+")]
        return [a for a in feed if a["reason"] == "bypass_suspected"]

    alerts = live.wait(alerted, timeout_s=30)
    assert all(a["plate"] in bypassers for a in alerts), alerts  # never a truck weighed there
    assert all("疑似绕行" in a["message"] for a in alerts)


def test_the_command_centre_assigns_an_open_order_to_another_unit(live, pages, registry):
    order = next(
        o
        for o in (live.order(x["order_id"]) for x in live.orders())
        if o["status"] == "open" and o["action"] == "intercept"
    )
    target = next(u for u in registry.units if u != order["unit_id"])
    status = pages["command"].evaluate(
        POST, [f"/dashboard/orders/{order['order_id']}", {"action": "assign", "unit_id": target}]
    )
    assert status == 202
    successor = f"{order['alert_id']}:{order['escalation'] + 1}"
    pages[target].wait_for_function("id => window.zc.orders.has(id)", arg=successor)
    assert live.order(successor)["unit_id"] == target
    pages[order["unit_id"]].wait_for_function(
        "id => window.zc.orders.get(id).status === 'escalated'", arg=order["order_id"]
    )
    # a unit cannot assign
    status = pages[target].evaluate(
        POST, [f"/officer/orders/{successor}", {"action": "assign", "unit_id": order["unit_id"]}]
    )
    assert status == 400


def test_a_quiet_feed_stays_open_past_the_redis_socket_timeout(live, registry):
    """A page's feed with nothing to push waits on Redis for less than the client's socket
    timeout (redis-py 8: 5 s) and sends keep-alives; a longer wait ended in a Redis
    TimeoutError that closed the feed every few seconds (the page reconnected after 2 s, and an
    order coming meanwhile waited for it)."""
    unit = sorted(registry.units)[-1]
    conn = http.client.HTTPConnection("127.0.0.1", live.web_port, timeout=10)
    conn.request("GET", "/officer/events", headers={"Authorization": f"Bearer {live.tokens[unit]}"})
    response = conn.getresponse()
    assert response.status == 200
    pings, started = 0, time.monotonic()
    try:
        while pings < 2:
            line = response.readline()
            assert line, f"the feed closed after {time.monotonic() - started:.1f} s"
            pings += line.strip() == b"event: ping"
    finally:
        conn.close()
    assert time.monotonic() - started > 6.0  # past the socket timeout, still open
