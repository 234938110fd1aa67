"""PayPal through the gateway: Stripe → PayPal fail-over with the shipped
routing script, the approval link, capture after approval, refund of the
capture, and the OAuth token fetched once and reused."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Gateway, Mock, main  # noqa: E402

PI = "/v1/payment_intents"
ORDERS = "/v2/checkout/orders"


def providers(mock):
    return {
        "stripe": {"plugin": "stripe", "secret_key": "sk_test_pp", "base_url": mock.url},
        "paypal": {"plugin": "paypal", "client_id": "mock_client",
                   "client_secret": "mock_secret", "base_url": mock.url},
    }


def test_stripe_down_fails_over_to_paypal_with_the_default_routing():
    with Mock() as mock, Gateway(providers(mock),
                                 extra_conf="backoff_base_ms = 10\nbackoff_max_ms = 20\n") as gw:
        mock.faults(PI, "POST", [{"status": 503, "times": 20}])
        st, _, p = gw.request("POST", "/v1/payments",
                              json={"amount": 1999, "currency": "usd",
                                    "return_url": "https://app.example.com/paid",
                                    "cancel_url": "https://app.example.com/cancel"},
                              headers={"Idempotency-Key": "pp-1"})
        assert st == 201, p
        assert p["provider"] == "paypal" and p["status"] == "requires_action", p
        assert [a["provider"] for a in p["attempts"]][-1] == "paypal"
        assert all(a["outcome"] == "unavailable" for a in p["attempts"][:-1])
        assert p["approval_url"] and p["provider_ref"] in p["approval_url"], p
        order = mock.requests(ORDERS)[0]
        assert order["headers"]["paypal-request-id"].startswith("agape-")
        assert '"value":"19.99"' in order["body"] and '"currency_code":"USD"' in order["body"]

        # the buyer has not approved yet: PayPal refuses the capture
        st, _, err = gw.request("POST", f"/v1/payments/{p['id']}/capture")
        assert st == 400 and err["error"]["type"] == "invalid_request", err
        # the buyer approves; the capture goes through
        st, _, _ = mock.request("POST", f"/_mock/paypal/approve/{p['provider_ref']}", "{}",
                                {"Content-Type": "application/json"})
        assert st == 200
        st, _, cap = gw.request("POST", f"/v1/payments/{p['id']}/capture")
        assert st == 200 and cap["status"] == "succeeded" and cap["capture_ref"], cap
        st, _, rf = gw.request("POST", f"/v1/payments/{p['id']}/refunds", json={"amount": 999})
        assert st == 201 and rf["status"] == "succeeded" and rf["amount"] == 999, rf
        refund = [r for r in mock.requests() if r["path"].endswith("/refund")][0]
        assert cap["capture_ref"] in refund["path"]
        assert '"value":"9.99"' in refund["body"]
        # one token for the whole run, never in the log
        assert len(mock.requests("/v1/oauth2/token")) == 1
        log = gw.log_text()
        assert "mock_secret" not in log and "A21AA-mock" not in log


main(globals())
