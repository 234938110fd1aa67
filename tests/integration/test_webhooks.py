"""Webhooks on the real binary: signatures (sandbox and Stripe, PROVIDERS.md
§10.1 vectors), durable and deduplicated storage, the worker, the payment
status order, Lua rules (retries, failures, replay) and kill -9 durability."""

import hashlib
import hmac
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SLOW, Gateway, free_port, main, wait_until  # noqa: E402

SBX_SECRET = "whsec_sbx_test"
STRIPE_SECRET = "whsec_test_secret"

PROVIDERS = {
    "sandbox": {"plugin": "sandbox", "webhook_secret": SBX_SECRET},
    "stripe": {"plugin": "stripe", "secret_key": "sk_test_x",
               "webhook_secret": STRIPE_SECRET, "base_url": "http://127.0.0.1:9"},
    # Tolerance 0 turns the timestamp check off, so the fixed vectors apply.
    "stripe_vec": {"plugin": "stripe", "secret_key": "sk_test_x",
                   "webhook_secret": STRIPE_SECRET, "webhook_tolerance_s": 0,
                   "base_url": "http://127.0.0.1:9"},
    # No webhook secret configured: usable for payments, refuses every webhook.
    "stripe_nosecret": {"plugin": "stripe", "secret_key": "sk_test_x",
                        "base_url": "http://127.0.0.1:9"},
}

# A rule script for the tests: counts runs per event in kv "test", fails on
# purpose for some event types, queues a message for others.
TEST_RULES = r"""
function on_webhook(ev)
  local key = "count:" .. ev.id
  agape.kv_put("test", key, (agape.kv_get("test", key) or 0) + 1)
  -- reads see the run's own writes
  assert(agape.kv_get("test", key) >= 1)
  agape.kv_put("test", "attempt:" .. ev.id, ev.attempt)
  if ev.payment then
    agape.kv_put("test", "seen_status:" .. ev.id, ev.payment.status)
    local again = agape.payment(ev.payment.id)
    agape.kv_put("test", "read_status:" .. ev.id, again.status)
    local byref = agape.payment_by_ref(ev.provider, ev.payment_ref)
    agape.kv_put("test", "byref:" .. ev.id, byref and byref.id or "none")
  end
  if ev.subscription then
    local s = agape.subscription(ev.subscription.id)
    agape.kv_put("test", "sub_status:" .. ev.id, s.status)
  end
  if ev.type == "test.flaky" and ev.attempt < 3 then
    agape.kv_put("test", "flaky_partial", true)
    agape.enqueue_message{channel = "email", to = "x@example.com", template = "welcome"}
    error("flaky rule fails on attempt " .. ev.attempt)
  end
  if ev.type == "test.broken" then
    error("always broken")
  end
  if ev.type == "test.message" then
    agape.enqueue_message{channel = "email", to = "ana@example.com", template = "welcome",
                          data = {name = "Ana"}}
    agape.track{name = "webhook_seen", user_id = "42", params = {type = ev.type}}
  end
end
"""


def sign(secret, body, t=None):
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return t, mac


def header(secret, body, t=None, extra=""):
    t, mac = sign(secret, body, t)
    return f"t={t},v1={mac}{extra}"


def deliver(gw, provider, body, headers):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return gw.request("POST", "/v1/webhooks/" + provider, body=body, headers=headers, key=None)


def deliver_sbx(gw, event, secret=SBX_SECRET, t=None):
    body = json.dumps(event).encode()
    return deliver(gw, "sandbox", body, {"Sandbox-Signature": header(secret, body, t)})


def deliver_stripe(gw, event, provider="stripe", secret=STRIPE_SECRET, t=None):
    body = json.dumps(event).encode()
    return deliver(gw, provider, body, {"Stripe-Signature": header(secret, body, t)})


def event_id_path(pub_id):
    return "/v1/webhooks/events/" + urllib.parse.quote(pub_id, safe="")


def get_event(gw, pub_id):
    status, _, body = gw.request("GET", event_id_path(pub_id))
    assert status == 200, (status, body)
    return body


def wait_status(gw, pub_id, want, timeout=5.0):
    return wait_until(lambda: (lambda e: e if e["status"] == want else None)(
        get_event(gw, pub_id)), timeout=timeout, message=f"{pub_id} {want}")


def kv(gw, ns, key):
    status, _, body = gw.request("GET", f"/v1/admin/kv/{ns}/" + urllib.parse.quote(key, safe=":"))
    if status == 404:
        return None
    assert status == 200, (status, body)
    return body["value"]


def list_events(gw, query=""):
    status, _, body = gw.request("GET", "/v1/webhooks/events" + query)
    assert status == 200, (status, body)
    return body["events"]


def outbox(gw, kind=None):
    q = "?kind=" + kind if kind else ""
    status, _, body = gw.request("GET", "/v1/admin/outbox" + q)
    assert status == 200, (status, body)
    return [x["item"] for x in body["items"]]


def messages(gw):
    """The messages the rules queued (GET /v1/messages, oldest first). The worker
    delivers them (kind "message"), so they no longer stay in the outbox."""
    status, _, body = gw.request("GET", "/v1/messages?limit=100")
    assert status == 200, (status, body)
    return body["messages"]


def new_payment(gw, approve=True, extra=None):
    req = {"amount": 1000, "currency": "usd", "provider": "sandbox",
           "customer": {"email": "ana@example.com"}, "metadata": {"user_id": "42"}}
    if approve:
        req["metadata"]["sandbox_action"] = "approve"
    req.update(extra or {})
    status, _, pay = gw.request("POST", "/v1/payments", json=req)
    assert status == 201, pay
    assert pay["provider_ref"] == "sbx_" + pay["id"]
    return pay


class Scripts:
    """A scripts directory: the integration routing script plus `rules`."""

    def __init__(self, rules):
        self.rules = rules

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="agape-wh-scripts-")
        src = os.path.join(os.environ["AGAPE_SOURCE_DIR"], "tests", "integration", "scripts",
                           "routing.lua")
        shutil.copy(src, os.path.join(self.dir, "routing.lua"))
        with open(os.path.join(self.dir, "webhooks.lua"), "w") as f:
            f.write(self.rules)
        return self.dir

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def gateway(scripts, extra_conf=""):
    conf = ("webhook_backoff_ms = 50\nwebhook_max_attempts = 4\n"
            "analytics_flush_ms = 600000  -- rule-tracked events stay queued to be seen\n"
            + extra_conf)
    return Gateway(PROVIDERS, scripts=scripts, extra_conf=conf)


# --------------------------------------------------------------------------


def test_signatures_refused_and_nothing_stored():
    with Scripts(TEST_RULES) as sd, gateway(sd) as gw:
        ev = {"id": "ev_sig", "type": "test.plain"}
        body = json.dumps(ev).encode()
        now = int(time.time())
        t, mac = sign(SBX_SECRET, body, now)
        _, wrong = sign("whsec_other", body, now)
        cases = [
            ("tampered body", body + b" ", {"Sandbox-Signature": f"t={t},v1={mac}"}),
            ("wrong secret", body, {"Sandbox-Signature": f"t={t},v1={wrong}"}),
            ("stale", body, {"Sandbox-Signature": header(SBX_SECRET, body, now - 400)}),
            ("future", body, {"Sandbox-Signature": header(SBX_SECRET, body, now + 400)}),
            ("missing header", body, {}),
            ("not a header", body, {"Sandbox-Signature": "i'm not even a real signature header"}),
            ("only v0", body, {"Sandbox-Signature": f"t={t},v0={mac}"}),
            ("all v1 bad", body, {"Sandbox-Signature": f"t={t},v1=bad,v1={wrong}"}),
        ]
        for name, b, h in cases:
            status, _, err = deliver(gw, "sandbox", b, h)
            assert status == 400, (name, status, err)
            assert err["error"]["type"] == "invalid_signature", (name, err)
            assert SBX_SECRET not in json.dumps(err), name
        # Stripe, same cases that matter, with its header
        sbody = json.dumps({"id": "evt_sig", "object": "event", "type": "x.y"}).encode()
        for name, h in [
            ("stripe wrong secret", {"Stripe-Signature": header("whsec_nope", sbody)}),
            ("stripe stale", {"Stripe-Signature": header(STRIPE_SECRET, sbody, now - 301 - 60)}),
            ("stripe future", {"Stripe-Signature": header(STRIPE_SECRET, sbody, now + 400)}),
            ("stripe missing", {}),
            ("stripe sandbox header", {"Sandbox-Signature": header(STRIPE_SECRET, sbody)}),
        ]:
            status, _, err = deliver(gw, "stripe", sbody, h)
            assert status == 400 and err["error"]["type"] == "invalid_signature", (name, err)
            assert STRIPE_SECRET not in json.dumps(err), name
        status, _, err = deliver(gw, "stripe_nosecret", sbody,
                                 {"Stripe-Signature": header(STRIPE_SECRET, sbody)})
        assert status == 400 and "webhook_secret not configured" in err["error"]["message"], err
        # Unknown provider, and a route-shaped but invalid one
        status, _, err = deliver(gw, "nosuch", body, {})
        assert status == 404 and err["error"]["type"] == "not_found", err
        status, _, err = deliver(gw, "Bad.Name", body, {})
        assert status == 404, err
        # nothing stored, nothing queued
        assert list_events(gw) == []
        assert outbox(gw) == []
        # A good signature among bad ones (a rolled secret) is accepted.
        status, _, ok = deliver(gw, "sandbox", body,
                                {"Sandbox-Signature": f"t={t},v1=bad_signature,v1={wrong},"
                                                      f"v1={mac}"})
        assert status == 200 and ok == {"received": True, "id": "ev_sig", "duplicate": False}, ok
        assert [e["id"] for e in list_events(gw)] == ["sandbox:ev_sig"]


def test_stripe_vectors():
    compact = b'{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}'
    dummy = (b'{\n  "id": "evt_test_webhook",\n  "object": "event",\n'
             b'  "data": { "object": { "id": "rdr_123", "object": "terminal.reader" } }\n}')
    assert len(dummy) == 125
    # Our signer agrees with the published vectors.
    assert sign(STRIPE_SECRET, compact, 1700000000)[1] == \
        "67da5088c63e080c71bd2bb0cb5c03d85a8fc6a21ce3aaf484df809654745b92"
    assert sign(STRIPE_SECRET, dummy, 1700000000)[1] == \
        "3bfab77baf5f7b6991a46c9b53b6547d7afc56148b10468fcad9f35c1992ffbd"
    assert sign(STRIPE_SECRET, dummy, 12345)[1] == \
        "07b1ede164afb7b5de91267ffa656f568c65d6e0783ce0ac55ee094643578eda"
    with Scripts(TEST_RULES) as sd, gateway(sd) as gw:
        hv = "t=1700000000,v1=67da5088c63e080c71bd2bb0cb5c03d85a8fc6a21ce3aaf484df809654745b92"
        # With the default tolerance the 2023 timestamp is stale…
        status, _, err = deliver(gw, "stripe", compact, {"Stripe-Signature": hv})
        assert status == 400 and "tolerance" in err["error"]["message"], err
        # …without it the vector verifies, and the event is stored.
        status, _, ok = deliver(gw, "stripe_vec", compact, {"Stripe-Signature": hv})
        assert status == 200 and ok["id"] == "evt_1" and ok["duplicate"] is False, ok
        # The dummy payload verifies (t=12345) but has no type: not an event we can store.
        h12345 = "t=12345,v1=07b1ede164afb7b5de91267ffa656f568c65d6e0783ce0ac55ee094643578eda"
        status, _, err = deliver(gw, "stripe_vec", dummy, {"Stripe-Signature": h12345})
        assert status == 400 and err["error"]["type"] == "invalid_request", err
        # One flipped hex digit is a wrong signature.
        status, _, err = deliver(gw, "stripe_vec", compact,
                                 {"Stripe-Signature": hv[:-1] + ("3" if hv[-1] != "3" else "4")})
        assert status == 400 and err["error"]["type"] == "invalid_signature", err
        ev = wait_status(gw, "stripe_vec:evt_1", "done")
        assert ev["type"] == "payment_intent.succeeded" and ev["attempts"] == 1
        assert [e["id"] for e in list_events(gw)] == ["stripe_vec:evt_1"]
        assert kv(gw, "test", "count:stripe_vec:evt_1") == 1


def test_duplicates_run_once():
    with Scripts(TEST_RULES) as sd, gateway(sd) as gw:
        ev = {"id": "ev_dup", "type": "test.message"}
        status, _, first = deliver_sbx(gw, ev)
        assert status == 200 and first == {"received": True, "id": "ev_dup",
                                           "duplicate": False}, first
        for _ in range(3):
            status, _, again = deliver_sbx(gw, ev)
            assert status == 200 and again["duplicate"] is True, again
        wait_status(gw, "sandbox:ev_dup", "done")
        # A late duplicate after the run changes nothing either.
        status, _, again = deliver_sbx(gw, ev)
        assert again["duplicate"] is True
        time.sleep(0.3)
        assert kv(gw, "test", "count:sandbox:ev_dup") == 1
        msgs = wait_until(lambda: messages(gw), message="the rule's message")
        assert len(msgs) == 1, msgs
        assert msgs[0]["to"] == "ana@example.com" and msgs[0]["template"] == "welcome"
        assert msgs[0]["id"].startswith("msg_")
        assert msgs[0]["source"] == "sandbox:ev_dup"
        tracked = outbox(gw, "event")
        assert len(tracked) == 1 and tracked[0]["name"] == "webhook_seen", tracked
        assert outbox(gw, "webhook") == []


def test_payment_status_order():
    with Scripts(TEST_RULES) as sd, gateway(sd) as gw:
        pay = new_payment(gw)
        assert pay["status"] == "requires_action"
        ref = pay["provider_ref"]

        def send(eid, status, typ=None):
            ev = {"id": eid, "type": typ or "payment." + status, "payment_ref": ref,
                  "status": status}
            s, _, b = deliver_sbx(gw, ev)
            assert s == 200, b
            return wait_status(gw, "sandbox:" + eid, "done")

        def payment():
            s, _, p = gw.request("GET", "/v1/payments/" + pay["id"])
            assert s == 200
            return p

        send("ev_ok", "succeeded")
        assert payment()["status"] == "succeeded"
        assert kv(gw, "test", "seen_status:sandbox:ev_ok") == "succeeded"
        assert kv(gw, "test", "read_status:sandbox:ev_ok") == "succeeded"
        assert kv(gw, "test", "byref:sandbox:ev_ok") == pay["id"]
        # late events never move it back; their rules still run
        send("ev_late_processing", "processing")
        send("ev_late_failed", "failed")
        send("ev_late_action", "requires_action")
        p = payment()
        assert p["status"] == "succeeded", p
        assert kv(gw, "test", "seen_status:sandbox:ev_late_failed") == "succeeded"
        assert [e["event_id"] for e in p["events"]] == ["ev_ok"], p["events"]
        send("ev_refund", "refunded")
        p = payment()
        assert p["status"] == "refunded" and p["refunded_amount"] == 1000, p
        send("ev_after_refund", "succeeded")
        assert payment()["status"] == "refunded"
        assert [e["event_id"] for e in payment()["events"]] == ["ev_ok", "ev_refund"]

        # failed → succeeded (the customer retried) is allowed; never the reverse
        pay = new_payment(gw)
        ref = pay["provider_ref"]
        send("ev2_failed", "failed")
        assert payment()["status"] == "failed"
        send("ev2_ok", "succeeded")
        assert payment()["status"] == "succeeded"
        send("ev2_failed_again", "failed")
        assert payment()["status"] == "succeeded"

        # an event for an unknown payment reference is handled without a payment
        s, _, b = deliver_sbx(gw, {"id": "ev_noref", "type": "payment.succeeded",
                                   "payment_ref": "sbx_nope", "status": "succeeded"})
        assert s == 200
        wait_status(gw, "sandbox:ev_noref", "done")
        assert kv(gw, "test", "seen_status:sandbox:ev_noref") is None


def test_rule_fails_then_succeeds_and_fails_for_good():
    with Scripts(TEST_RULES) as sd, gateway(sd) as gw:
        s, _, _ = deliver_sbx(gw, {"id": "ev_flaky", "type": "test.flaky"})
        assert s == 200
        ev = wait_status(gw, "sandbox:ev_flaky", "done")
        assert ev["attempts"] == 3 and ev["last_error"] is None, ev
        # only the successful run's writes were committed
        assert kv(gw, "test", "count:sandbox:ev_flaky") == 1
        assert kv(gw, "test", "attempt:sandbox:ev_flaky") == 3
        assert kv(gw, "test", "flaky_partial") is None
        assert outbox(gw, "message") == []

        s, _, _ = deliver_sbx(gw, {"id": "ev_broken", "type": "test.broken"})
        assert s == 200
        ev = wait_status(gw, "sandbox:ev_broken", "failed")
        assert ev["attempts"] == 4 and "always broken" in ev["last_error"], ev
        assert ev["next_at"] is None
        assert kv(gw, "test", "count:sandbox:ev_broken") is None
        assert outbox(gw, "webhook") == []
        assert [e["id"] for e in list_events(gw, "?status=failed")] == ["sandbox:ev_broken"]

        # replay: pending again, attempts from 0, and it fails again 4 times
        s, _, rep = gw.request("POST", event_id_path("sandbox:ev_broken") + "/replay")
        assert s == 200 and rep["status"] == "pending" and rep["attempts"] == 0, rep
        assert rep["last_error"] is None
        ev = wait_status(gw, "sandbox:ev_broken", "failed")
        assert ev["attempts"] == 4, ev

        # replaying a done event runs its rule once more
        s, _, rep = gw.request("POST", event_id_path("sandbox:ev_flaky") + "/replay")
        assert s == 200
        ev = wait_status(gw, "sandbox:ev_flaky", "done")
        assert kv(gw, "test", "count:sandbox:ev_flaky") == 2
        assert kv(gw, "test", "attempt:sandbox:ev_flaky") == 3


def test_kill9_after_ack_runs_exactly_once():
    delay_ms = 2500 * SLOW  # long enough to kill and restart before the first run
    with Scripts(TEST_RULES) as sd, gateway(sd, f"webhook_first_delay_ms = {delay_ms}\n") as gw:
        s, _, ok = deliver_sbx(gw, {"id": "ev_crash", "type": "test.message"})
        assert s == 200 and ok["duplicate"] is False
        gw.kill9()  # acknowledged, not yet run
        gw._start()
        ev = get_event(gw, "sandbox:ev_crash")
        assert ev["status"] == "pending" and ev["attempts"] == 0, ev
        assert kv(gw, "test", "count:sandbox:ev_crash") is None
        s, _, again = deliver_sbx(gw, {"id": "ev_crash", "type": "test.message"})
        assert again["duplicate"] is True
        wait_status(gw, "sandbox:ev_crash", "done", timeout=8)
        assert kv(gw, "test", "count:sandbox:ev_crash") == 1
        assert len(wait_until(lambda: messages(gw), message="the rule's message")) == 1
        # and a restart after it ran runs nothing again
        gw.restart()
        time.sleep(0.3)
        assert kv(gw, "test", "count:sandbox:ev_crash") == 1
        assert len(messages(gw)) == 1


def test_stripe_subscriptions_in_order():
    with Scripts(TEST_RULES) as sd, gateway(sd) as gw:
        def sub_event(eid, typ, created, status, **extra):
            obj = {"id": "sub_1", "object": "subscription", "customer": "cus_9",
                   "status": status, "current_period_end": 1800000000,
                   "metadata": {"user_id": "42"},
                   "items": {"data": [{"id": "si_1", "quantity": 1,
                                       "price": {"id": "price_1", "product": "prod_1"}}]}}
            obj.update(extra)
            return {"id": eid, "object": "event", "type": typ, "created": created,
                    "data": {"object": obj}}

        s, _, b = deliver_stripe(gw, sub_event("evt_s2", "customer.subscription.updated",
                                               2000, "past_due"))
        assert s == 200, b
        wait_status(gw, "stripe:evt_s2", "done")
        # an older event arriving later does not overwrite the newer state
        s, _, b = deliver_stripe(gw, sub_event("evt_s1", "customer.subscription.created",
                                               1000, "active"))
        assert s == 200, b
        wait_status(gw, "stripe:evt_s1", "done")
        sub = kv(gw, "subscriptions", "sub_1")
        assert sub["status"] == "past_due" and sub["customer"] == "cus_9", sub
        assert sub["items"] == [{"id": "si_1", "price": "price_1", "product": "prod_1",
                                 "quantity": 1}], sub
        assert sub["current_period_end"] == 1800000000 and sub["deleted"] is False
        assert kv(gw, "test", "sub_status:stripe:evt_s2") == "past_due"
        s, _, b = deliver_stripe(gw, sub_event("evt_s3", "customer.subscription.deleted",
                                               3000, "canceled"))
        wait_status(gw, "stripe:evt_s3", "done")
        sub = kv(gw, "subscriptions", "sub_1")
        assert sub["status"] == "canceled" and sub["deleted"] is True, sub
        assert kv(gw, "test", "sub_status:stripe:evt_s3") == "canceled"


def test_admin_endpoints():
    with Scripts(TEST_RULES) as sd, gateway(sd) as gw:
        odd = "ev/with space?and%percent"
        for eid in ["ev_a", "ev_b", odd]:
            s, _, b = deliver_sbx(gw, {"id": eid, "type": "test.plain"})
            assert s == 200 and b["id"] == eid, b
        s, _, b = deliver_stripe(gw, {"id": "evt_x", "object": "event", "type": "x.y"})
        assert s == 200, b
        for pub in ["sandbox:ev_a", "sandbox:ev_b", "sandbox:" + odd, "stripe:evt_x"]:
            wait_status(gw, pub, "done")
        ev = get_event(gw, "sandbox:" + odd)
        assert ev["event_id"] == odd and ev["id"] == "sandbox:" + odd
        assert json.loads(ev["body"]) == {"id": odd, "type": "test.plain"}
        assert ev["normalized"]["event_id"] == odd and "outbox_key" not in ev
        assert len(list_events(gw)) == 4
        assert {e["id"] for e in list_events(gw, "?provider=stripe")} == {"stripe:evt_x"}
        assert len(list_events(gw, "?provider=sandbox&status=done")) == 3
        assert list_events(gw, "?status=pending") == []
        status, _, body = gw.request("GET", "/v1/webhooks/events?limit=2")
        assert status == 200 and len(body["events"]) == 2 and body["has_more"] is True
        assert all("body" not in e for e in body["events"])
        for q in ["?limit=0", "?limit=501", "?limit=x", "?status=weird"]:
            status, _, body = gw.request("GET", "/v1/webhooks/events" + q)
            assert status == 400 and body["error"]["type"] == "invalid_request", (q, body)
        for bad in ["sandbox:nope", "nocolon", "Bad:x"]:
            status, _, body = gw.request("GET", event_id_path(bad))
            assert status == 404 and body["error"]["type"] == "not_found", (bad, body)
            status, _, body = gw.request("POST", event_id_path(bad) + "/replay")
            assert status == 404, (bad, body)
        # admin scope required; the webhook endpoint itself needs no key
        for method, path in [("GET", "/v1/webhooks/events"),
                             ("GET", event_id_path("sandbox:ev_a")),
                             ("POST", event_id_path("sandbox:ev_a") + "/replay"),
                             ("GET", "/v1/admin/kv/test/x"), ("GET", "/v1/admin/outbox")]:
            status, _, body = gw.request(method, path, key=None)
            assert status == 401, (path, body)


def test_shipped_rules():
    scripts = os.path.join(os.environ["AGAPE_SOURCE_DIR"], "scripts")
    with Gateway(PROVIDERS, scripts=scripts, extra_conf="webhook_backoff_ms = 50\n") as gw:
        pay = new_payment(gw)
        s, _, b = deliver_sbx(gw, {"id": "ev_paid", "type": "payment.succeeded",
                                   "payment_ref": pay["provider_ref"], "status": "succeeded"})
        assert s == 200, b
        wait_status(gw, "sandbox:ev_paid", "done")
        sub = kv(gw, "user_subscriptions", "42")
        assert sub["status"] == "active" and sub["payment_id"] == pay["id"], sub
        msgs = wait_until(lambda: messages(gw), message="the confirmation")
        assert len(msgs) == 1, msgs
        assert msgs[0]["template"] == "subscription_confirmation"
        assert msgs[0]["to"] == "ana@example.com" and msgs[0]["channel"] == "email"
        assert msgs[0]["source"] == "sandbox:ev_paid"
        # a failed payment queues a notification; a late failure of a paid one does not
        pay2 = new_payment(gw)
        s, _, b = deliver_sbx(gw, {"id": "ev_fail", "type": "payment.failed",
                                   "payment_ref": pay2["provider_ref"], "status": "failed"})
        wait_status(gw, "sandbox:ev_fail", "done")
        s, _, b = deliver_sbx(gw, {"id": "ev_late_fail", "type": "payment.failed",
                                   "payment_ref": pay["provider_ref"], "status": "failed"})
        wait_status(gw, "sandbox:ev_late_fail", "done")
        msgs = wait_until(lambda: (lambda m: m if len(m) == 2 else None)(messages(gw)),
                          message="the failure notice")
        by_source = {m["source"]: m for m in msgs}  # rule ids are random: any order
        assert "template" not in by_source["sandbox:ev_fail"], msgs
        assert by_source["sandbox:ev_paid"]["template"] == "subscription_confirmation"
        # the shipped template renders the shipped rule's data; both went out
        wait_until(lambda: all(m["status"] == "sent" for m in messages(gw)),
                   message="both messages sent")
        assert kv(gw, "user_subscriptions", "42")["status"] == "active"


class KeyServer:
    """A loopback HTTP server answering GET /key with the signing key, counting hits."""

    def __init__(self, key):
        self.key = key
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                body = outer.key.encode()
                self.send_response(200 if self.path == "/key" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_verify_step_that_sends_a_request():
    """A verify step that needs a request (like PayPal's certificate) runs
    asynchronously through the client; its failure to get an answer is a 503."""
    build = os.environ["AGAPE_BUILD_DIR"]
    with KeyServer("k3y-for-tests") as ks, Scripts(TEST_RULES) as sd:
        conf = "\n".join([
            'listen = "@LISTEN@"', 'public_url = "@URL@"', 'data_dir = "@DATA_DIR@"',
            f'plugin_dir = "{build}/test-plugins"', 'scripts = "@SCRIPTS@"',
            "providers = {",
            f'  fetch = {{ plugin = "wh_fetch", key_url = "{ks.url}/key" }},',
            f'  fetch_404 = {{ plugin = "wh_fetch", key_url = "{ks.url}/nokey" }},',
            f'  fetch_down = {{ plugin = "wh_fetch",'
            f' key_url = "http://127.0.0.1:{free_port()}/k" }},',
            "}", ""])
        with Gateway(conf, scripts=sd) as gw:
            def send(provider, eid, key="k3y-for-tests"):
                body = json.dumps({"id": eid, "type": "test.plain"}).encode()
                mac = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
                return deliver(gw, provider, body, {"Fetch-Signature": mac})

            s, _, b = send("fetch", "f1")
            assert s == 200 and b["duplicate"] is False, b
            assert ks.hits == 1
            s, _, b = send("fetch", "f2")  # the key is cached by the core for the plugin
            assert s == 200, b
            assert ks.hits == 1
            s, _, b = send("fetch", "f3", key="wrong")
            assert s == 400 and b["error"]["type"] == "invalid_signature", b
            assert "does not match" in b["error"]["message"]
            s, _, b = send("fetch_404", "f4")
            assert s == 400 and "could not be fetched" in b["error"]["message"], b
            s, _, b = send("fetch_down", "f5")
            assert s == 503 and b["error"]["type"] == "provider_unavailable", b
            wait_status(gw, "fetch:f2", "done")
            assert {e["id"] for e in list_events(gw)} == {"fetch:f1", "fetch:f2"}


main(globals())
