"""The gateway under valgrind memcheck: a representative run (payments that
succeed, retry, fail over, decline, replay, refund, and bad requests), then a
clean stop. valgrind exits 99 on any memory error or definite leak, which the
harness turns into a failure. Registered in ctest for the plain build only."""

import os
import sys

os.environ["AGAPE_VALGRIND"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Gateway, Mock, main  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PI = "/v1/payment_intents"


def test_representative_run_has_no_memory_errors_or_leaks():
    with Mock() as mock:
        gw = Gateway({"stripe": {"plugin": "stripe", "secret_key": "sk_test_vg",
                                 "base_url": mock.url},
                      "sandbox": {"plugin": "sandbox"}},
                     scripts=os.path.join(HERE, "scripts"),
                     extra_conf="backoff_base_ms = 10\nbackoff_max_ms = 20\n")
        with gw:
            chain = {"amount": 1999, "currency": "usd", "metadata": {"chain": "stripe,sandbox"}}
            mock.faults(PI, "POST", [{"status": 503}])
            st, _, p = gw.request("POST", "/v1/payments", json=chain,
                                  headers={"Idempotency-Key": "vg-1"})
            assert st == 201, p
            st, hd, _ = gw.request("POST", "/v1/payments", json=chain,
                                   headers={"Idempotency-Key": "vg-1"})
            assert st == 201 and hd.get("idempotent-replayed") == "true"
            mock.faults(PI, "POST", [{"status": 503, "times": 10}])
            st, _, p = gw.request("POST", "/v1/payments", json=chain)
            assert st == 201 and p["provider"] == "sandbox", p
            st, _, _ = gw.request("POST", "/v1/payments",
                                  json={"amount": 4002, "currency": "usd",
                                        "provider": "sandbox"})
            assert st == 402
            st, _, rf = gw.request("POST", f"/v1/payments/{p['id']}/refunds",
                                   json={"amount": 100})
            assert st == 201, rf
            assert gw.request("POST", "/v1/payments", body="{bad")[0] == 400
            assert gw.request("GET", "/v1/providers")[0] == 200
            assert gw.request("GET", "/metrics", key=None)[0] == 200
            assert gw.request("POST", "/v1/admin/reload")[0] == 200
            code = gw.stop()
            assert code == 0, f"agape under valgrind exited {code}:\n{gw.log_text()[-4000:]}"


main(globals())
