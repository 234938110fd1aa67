"""POST /v1/events end to end: validation, durable queueing, batches of at most 25
per client to the GA4 emulator, retries (5xx, 429 with Retry-After), redelivery
after kill -9; the metrics flush to the New Relic emulator; and `agape validate`
with nothing but the retired GA_TRACKING_ID."""

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SLOW, Gateway, Mock, main, wait_until  # noqa: E402

SECRET = "s3cr3t-ga-api"


def ga(mock):
    return {"google_analytics": {"plugin": "google_analytics", "measurement_id": "G-TEST123",
                                 "api_secret": SECRET, "base_url": mock.url}}


FAST = "analytics_flush_ms = 300\nevent_backoff_ms = 200\n"


def state(mock, bucket):
    status, _, body = mock.request("GET", "/_mock/state/" + bucket)
    assert status == 200, body
    return body


def batches(mock, user=None):
    """The GA4 batches the emulator recorded, in arrival order."""
    got = state(mock, "ga4.batches")
    out = [got[k] for k in sorted(got, key=int)]
    return [b for b in out if user is None or b.get("user_id") == user]


def outbox(gw, kind):
    status, _, body = gw.request("GET", "/v1/admin/outbox?kind=" + kind)
    assert status == 200, body
    return [x["item"] for x in body["items"]]


def post_events(gw, events, headers=None):
    status, _, body = gw.request("POST", "/v1/events", json={"events": events}, headers=headers)
    assert status == 202, (status, body)
    assert body == {"accepted": len(events)}, body
    return body


def metric_value(gw, line_prefix):
    status, _, text = gw.request("GET", "/metrics", key=None)
    assert status == 200
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.split()[-1])
    return 0.0


# --------------------------------------------------------------------------


def test_validation():
    with Mock() as mock, Gateway(ga(mock), extra_conf=FAST) as gw:
        def refused(body, param, words=None, status=400):
            s, _, b = gw.request("POST", "/v1/events", json=body)
            assert s == status, (body, s, b)
            assert b["error"]["type"] == "invalid_request", b
            assert b["error"].get("param") == param, (param, b)
            if words:
                assert words in b["error"]["message"], b

        ok = {"name": "sign_up", "user_id": "42"}
        refused({"events": [ok, ok, ok, {"name": "sign-up", "user_id": "42"}]},
                "events[3].name", "letters, digits and underscores")
        refused({"events": [ok] * 501}, "events", "1 to 500")
        refused({"events": []}, "events")
        refused({"name": "x", "colour": "red"}, "colour", "not a known field")
        refused({"events": [ok, {"category": "User"}]}, "events[1].action", "is required")
        refused({"events": [{"name": "x", "action": "y"}]}, "events[0].name")
        refused({"events": [{"name": "x", "params": {"a": {"b": 1}}}]}, "events[0].params.a")
        refused({"events": [{"name": "x", "user_id": "ana@example.com"}]},
                "events[0].user_id", "e-mail")
        refused({"events": [{"name": "session_start", "user_id": "1"}]}, "events[0].name",
                "reserved")
        s, _, b = gw.request("POST", "/v1/events", body="{not json",
                             headers={"Content-Type": "application/json"})
        assert s == 400 and b["error"]["type"] == "invalid_request", b
        # Nothing was queued by any of those.
        assert outbox(gw, "event") == []
        time.sleep(0.5)
        assert batches(mock) == []

        # Authentication and scope.
        s, _, b = gw.request("POST", "/v1/events", json=ok, key=None)
        assert s == 401, b

    with Mock() as mock, Gateway(ga(mock), scopes="payments,errors") as gw:
        s, _, b = gw.request("POST", "/v1/events", json={"name": "sign_up", "user_id": "42"})
        assert s == 403 and b["error"]["type"] == "forbidden", b


def test_seed_shape_is_mapped_by_the_plugin():
    with Mock() as mock, Gateway(ga(mock), extra_conf=FAST) as gw:
        s, _, b = gw.request("POST", "/v1/events",
                             json={"category": "User", "action": "Registration",
                                   "label": "web", "value": 1, "user_id": "42"})
        assert s == 202 and b == {"accepted": 1}, b
        got = wait_until(lambda: batches(mock), message="the GA4 batch")
        assert len(got) == 1
        assert got[0]["client_id"] == "agape.73475cb40a568e8d" and got[0]["user_id"] == "42"
        ev = got[0]["events"]
        assert [e["name"] for e in ev] == ["registration"], ev
        assert ev[0]["params"] == {"event_category": "User", "event_label": "web", "value": 1}
        # The event's time is when the gateway accepted it.
        assert abs(got[0]["timestamp_micros"] / 1000 - time.time() * 1000) < 60000, got
        wait_until(lambda: outbox(gw, "event") == [], message="the outbox to drain")


def test_batch_boundaries():
    """n events of one client → ceil(n/25) GA4 requests, each full but the last."""
    with Mock() as mock, Gateway(ga(mock), extra_conf=FAST) as gw:
        for n in (1, 25, 26, 500):
            user = f"user{n}"
            events = [{"name": "tick", "user_id": user, "params": {"seq": i}}
                      for i in range(n)]
            post_events(gw, events)
            want = -(-n // 25)
            wait_until(lambda: len(batches(mock, user)) >= want, timeout=10,
                       message=f"{want} batches for {n} events")
            wait_until(lambda: outbox(gw, "event") == [], message="the outbox to drain")
            time.sleep(0.5)  # longer than analytics_flush_ms: no stray request follows
            got = batches(mock, user)
            sizes = sorted((len(b["events"]) for b in got), reverse=True)
            assert sizes == [25] * (n // 25) + ([n % 25] if n % 25 else []), (n, sizes)
            seqs = sorted(e["params"]["seq"] for b in got for e in b["events"])
            assert seqs == list(range(n)), n
        assert len(mock.requests(path="/mp/collect")) == 1 + 1 + 2 + 20
        assert metric_value(gw, 'agape_events_total{outcome="delivered"}') == 552


def test_batches_are_per_client():
    with Mock() as mock, Gateway(ga(mock), extra_conf=FAST) as gw:
        events = []
        for i in range(30):
            events.append({"name": "view", "user_id": f"u{i % 3}", "params": {"i": i}})
        events.append({"name": "view", "client_id": "555.1", "params": {"i": 99}})
        post_events(gw, events)
        wait_until(lambda: outbox(gw, "event") == [], message="the outbox to drain")
        got = batches(mock)
        assert len(got) == 4, got
        for b in got:
            users = {e["params"]["i"] % 3 for e in b["events"]}
            assert len(users) == 1 or b["client_id"] == "555.1", b
        assert sorted(len(b["events"]) for b in got) == [1, 10, 10, 10]


def test_retry_after_5xx():
    with Mock() as mock, Gateway(ga(mock), extra_conf=FAST + "max_retries = 1\n") as gw:
        # Two answers 503 use up the call's own retries; the event is put back in
        # the outbox and delivered on its next attempt.
        mock.faults("/mp/collect", "POST", [{"status": 503, "times": 3}])
        post_events(gw, [{"name": "purchase", "user_id": "7"}])
        wait_until(lambda: batches(mock), timeout=10, message="delivery after the 5xx")
        reqs = mock.requests(path="/mp/collect")
        assert len(reqs) == 4, reqs
        assert [bool(r.get("fault")) for r in reqs] == [True, True, True, False], reqs
        wait_until(lambda: outbox(gw, "event") == [], message="the outbox to drain")
        assert metric_value(gw, 'agape_events_total{outcome="rescheduled"}') == 1
        assert metric_value(gw, 'agape_events_total{outcome="delivered"}') == 1


def test_rate_limited_honours_retry_after():
    with Mock() as mock, Gateway(ga(mock), extra_conf=FAST) as gw:
        mock.faults("/mp/collect", "POST",
                    [{"status": 429, "headers": {"Retry-After": "2"}}])
        post_events(gw, [{"name": "purchase", "user_id": "7"}])
        wait_until(lambda: batches(mock), timeout=15, message="delivery after the 429")
        reqs = mock.requests(path="/mp/collect")
        assert len(reqs) == 2, reqs
        waited = reqs[1]["time_ms"] - reqs[0]["time_ms"]
        assert waited >= 2000, waited
        wait_until(lambda: outbox(gw, "event") == [], message="the outbox to drain")


def sign_sandbox(body, secret):
    t = str(int(time.time()))
    sig = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return {"Sandbox-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


def test_invalid_event_is_dropped_alone():
    """An event the provider refuses never takes the other events of its batch down:
    the batch is split and only the bad one is dropped. The API refuses GA's reserved
    names, so the bad event comes from a webhook rule (agape.track), the way rules
    queue events."""
    sd = tempfile.mkdtemp(prefix="agape-rules-")
    try:
        shutil.copy(os.path.join(os.environ["AGAPE_SOURCE_DIR"], "scripts", "routing.lua"), sd)
        with open(os.path.join(sd, "webhooks.lua"), "w") as f:
            f.write("function on_webhook(ev)\n"
                    "  agape.track{name = 'first_visit', user_id = '9'}\n"
                    "end\n")
        with Mock() as mock:
            conf = dict(ga(mock), sandbox={"plugin": "sandbox", "webhook_secret": "whsec_abc"})
            with Gateway(conf, scripts=sd,
                         extra_conf="analytics_flush_ms = 1500\nevent_backoff_ms = 200\n") as gw:
                body = json.dumps({"id": "ev_1", "type": "x.y"})
                s, _, b = gw.request("POST", "/v1/webhooks/sandbox", body=body, key=None,
                                     headers=sign_sandbox(body, "whsec_abc"))
                assert s == 200, b
                post_events(gw, [{"name": "good", "user_id": "9", "params": {"n": i}}
                                 for i in range(3)])
                wait_until(lambda: outbox(gw, "event") == [], timeout=10,
                           message="the outbox to drain")
                got = batches(mock, "9")
                names = sorted(e["name"] for b in got for e in b["events"])
                assert names == ["good", "good", "good"], got
                assert metric_value(gw, 'agape_events_total{outcome="refused"}') == 1
                assert metric_value(gw, 'agape_events_total{outcome="delivered"}') == 4
                assert "is reserved by Google Analytics" in gw.log_text()
    finally:
        shutil.rmtree(sd, ignore_errors=True)


def test_kill9_with_queued_events():
    """Events acknowledged (202) but not yet sent survive kill -9 and are all
    delivered after the restart."""
    with Mock() as mock:
        conf = ga(mock)
        extra = ('analytics_flush_ms = tonumber(env("TEST_FLUSH_MS", "300"))\n'
                 "event_backoff_ms = 200\n")
        with Gateway(conf, extra_conf=extra, env={"TEST_FLUSH_MS": "600000"}) as gw:
            # 20 events of one client wait for company (the flush is 10 minutes).
            post_events(gw, [{"name": "tick", "user_id": "k9", "params": {"seq": i}}
                             for i in range(20)])
            time.sleep(0.3)
            assert batches(mock) == []
            assert len(outbox(gw, "event")) == 20
            gw.kill9()
            gw.env["TEST_FLUSH_MS"] = "300"
            gw._start()
            wait_until(lambda: batches(mock, "k9"), timeout=10, message="redelivery")
            wait_until(lambda: outbox(gw, "event") == [], message="the outbox to drain")
            seqs = sorted(e["params"]["seq"] for b in batches(mock, "k9") for e in b["events"])
            assert seqs == list(range(20)), seqs


def test_idempotency_key():
    with Mock() as mock, Gateway(ga(mock), extra_conf=FAST) as gw:
        events = [{"name": "signup_done", "user_id": "id1"}] * 3
        h = {"Idempotency-Key": "ev-batch-1"}
        s1, _, b1 = gw.request("POST", "/v1/events", json={"events": events}, headers=h)
        s2, h2, b2 = gw.request("POST", "/v1/events", json={"events": events}, headers=h)
        assert s1 == s2 == 202 and b1 == b2 == {"accepted": 3}, (b1, b2)
        assert h2.get("idempotent-replayed") == "true", h2
        s3, _, b3 = gw.request("POST", "/v1/events", json={"events": events[:1]}, headers=h)
        assert s3 == 409 and b3["error"]["type"] == "idempotency_conflict", b3
        wait_until(lambda: outbox(gw, "event") == [], message="the outbox to drain")
        got = batches(mock, "id1")
        assert sum(len(b["events"]) for b in got) == 3, got


def test_newrelic_metrics_flush():
    with Mock() as mock:
        conf = {"newrelic": {"plugin": "newrelic", "license_key": "NRAK-" + "x" * 35,
                             "base_url": mock.url, "app_name": "agape-test"},
                "sandbox": {"plugin": "sandbox"}}
        with Gateway(conf, extra_conf="metrics_flush_seconds = 1\n") as gw:
            for _ in range(3):
                assert gw.request("GET", "/healthz", key=None)[0] == 200

            def flushed():
                got = state(mock, "newrelic.metrics")
                for k in sorted(got, key=int):
                    names = {m["name"] for m in got[k]["payload"][0]["metrics"]}
                    if "agape_http_requests_total" in names:
                        return got[k]
                return None

            rec = wait_until(flushed, timeout=5, message="a metrics flush to New Relic")
            assert rec["content_encoding"] == "gzip", rec
            batch = rec["payload"][0]
            assert batch["common"]["attributes"]["app.name"] == "agape-test"
            assert batch["common"]["interval.ms"] > 0
            by = {}
            for m in batch["metrics"]:
                by.setdefault(m["name"], []).append(m)
            req = [m for m in by["agape_http_requests_total"]
                   if m["attributes"].get("route") == "/healthz"]
            assert req and req[0]["type"] == "count" and req[0]["value"] >= 1, req
            hist = by["agape_http_request_duration_seconds"][0]
            assert hist["type"] == "summary" and set(hist["value"]) == {"count", "sum", "min",
                                                                         "max"}, hist
            assert by["agape_circuit_state"][0]["type"] == "gauge"
            # The next flushes carry only increases: the sum of all healthz counts
            # equals the requests made.
            time.sleep(2.2 * SLOW)
            total = 0
            for r in state(mock, "newrelic.metrics").values():
                for m in r["payload"][0]["metrics"]:
                    if m["name"] == "agape_http_requests_total" and \
                            m["attributes"].get("route") == "/healthz":
                        total += m["value"]
            assert total == 4, total  # 3 here + the harness's readiness probe
            assert "NRAK-" not in gw.log_text()


def test_newrelic_flush_failure_is_retried_next_period():
    with Mock() as mock:
        conf = {"newrelic": {"plugin": "newrelic", "license_key": "NRAK-" + "y" * 35,
                             "base_url": mock.url}}
        mock.faults("/metric/v1", "POST", [{"status": 503}])
        # The period from the environment this time (API.md), not agape.conf.
        with Gateway(conf, env={"AGAPE_METRICS_FLUSH_SECONDS": "1"}) as gw:
            wait_until(lambda: len(state(mock, "newrelic.metrics")) >= 1, timeout=6,
                       message="a flush after the failed one")
            reqs = mock.requests(path="/metric/v1")
            assert reqs[0].get("fault") and not reqs[1].get("fault"), reqs
            # The interval of the first good flush covers the failed period too.
            rec = state(mock, "newrelic.metrics")["1"]
            assert rec["payload"][0]["common"]["interval.ms"] >= 1500, rec
            assert "metrics flush failed" in gw.log_text()


def test_validate_refuses_retired_tracking_id():
    """The shipped configuration with nothing but GA_TRACKING_ID: validate fails
    and says the id is retired."""
    src = os.environ["AGAPE_SOURCE_DIR"]
    with open(os.path.join(src, "etc", "agape.conf")) as f:
        text = f.read()
    gw = Gateway(text, env={"GA_TRACKING_ID": "UA-12345-1", "GA_MEASUREMENT_ID": "",
                            "GA_API_SECRET": ""})
    gw._prepare()
    try:
        r = subprocess.run(gw._command("validate"), cwd=gw.dir, env=gw.env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30 * SLOW)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        assert r.returncode != 0, out
        assert "GA_TRACKING_ID" in out and "retired" in out, out
    finally:
        gw._cleanup(failed=False)


main(globals())
