"""Webhook building blocks without a server: signing, URL checks, bodies, backoff."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from monitor.alerts import formats, signing, urls
from monitor.alerts.outbox import EVENT_TYPES, build_event
from monitor.alerts.worker import backoff_delay


def test_generated_secret_is_standard_webhooks_shaped() -> None:
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert secret != signing.generate_secret()


def test_signature_verifies_with_the_reference_library() -> None:
    secret = signing.generate_secret()
    body = formats.render_body(build_event("rule.fired", {"run_id": "r", "value": float("nan")}), "standard")
    headers = signing.signed_headers(secret, "evt_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers)["data"]["value"] == "NaN"
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("rule.fired", "rule.resolved"), headers)


def test_caller_secret_is_normalised_and_checked() -> None:
    raw = base64.b64encode(b"k" * 32).decode()
    assert signing.normalise_secret(raw) == "whsec_" + raw
    assert signing.normalise_secret("whsec_" + raw) == "whsec_" + raw
    too_long = "whsec_" + base64.b64encode(b"x" * 65).decode()
    for bad in ("whsec_not base64!", base64.b64encode(b"short").decode(), too_long):
        with pytest.raises(ValueError):
            signing.normalise_secret(bad)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "https://hooks.example.com/services/T/B/X",
                                 "http://[::1]:8080/", "https://example.com"])
def test_good_urls_pass(url: str) -> None:
    assert urls.check_syntax(f"  {url} ") == url


@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "javascript:alert(1)", "file:///etc/passwd", "http://", "http:///path",
    "http://user:pass@example.com/", "http://token@example.com/", "http://example.com:99999/",
    "http://exa mple.com/", "http://example.com/\nx", "", "https://example.com/" + "a" * 2100,
])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(urls.UnsafeUrl):
        urls.check_syntax(url)


def test_private_destinations_only_when_allowed() -> None:
    urls.check_destination("http://127.0.0.1:1/x", allow_private=True)
    for url in ("http://127.0.0.1:1/x", "http://10.1.2.3/", "http://169.254.169.254/latest", "http://[::1]/",
                "http://[::ffff:127.0.0.1]/", "http://localhost/", "http://0.0.0.0/"):
        with pytest.raises(urls.UnsafeUrl):
            urls.check_destination(url, allow_private=False)
    urls.check_destination("http://8.8.8.8/", allow_private=False)  # a literal public address: no DNS needed


@pytest.mark.parametrize("host", [
    "[::127.0.0.1]",            # IPv4-compatible (deprecated ::/96) loopback
    "[::ffff:7f00:1]",          # IPv4-mapped loopback, hex spelling
    "[::ffff:169.254.169.254]",  # IPv4-mapped metadata address
    "[::a9fe:a9fe]",            # IPv4-compatible metadata address
    "[64:ff9b::a9fe:a9fe]",     # NAT64 (well-known prefix) form of 169.254.169.254
    "[64:ff9b::10.0.0.1]",      # NAT64 form of a private address
    "[2002:7f00:1::]",          # 6to4 of 127.0.0.1
    "[2002:a9fe:a9fe::1]",      # 6to4 of the metadata address
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo whose client is 127.0.0.1 (ones' complement)
    "[2001:0:7f00:1::1]",       # Teredo whose server is 127.0.0.1
])
def test_ipv6_forms_embedding_a_private_ipv4_are_refused(host: str) -> None:
    with pytest.raises(urls.UnsafeUrl):
        urls.check_destination(f"http://{host}:8080/hook", allow_private=False)
    urls.check_destination(f"http://{host}:8080/hook", allow_private=True)


@pytest.mark.parametrize("host", ["[2606:4700:4700::1111]", "[64:ff9b::808:808]", "[::ffff:8.8.8.8]"])
def test_ipv6_forms_of_public_addresses_pass(host: str) -> None:
    urls.check_destination(f"http://{host}/", allow_private=False)


def test_redact_keeps_only_scheme_and_host() -> None:
    assert urls.redact("https://hooks.slack.com/services/T0/B0/SECRET?x=1") == "https://hooks.slack.com/…"
    assert "SECRET" not in urls.redact("http://127.0.0.1:8080/SECRET")


def test_slack_text_summarises_rule_and_decision() -> None:
    fired = build_event("rule.fired", {"run_id": "r1", "rule": "attention_collapse", "severity": "pause",
                                       "metric": "attention_max", "value": 0.001, "threshold": 0.1, "step": 7,
                                       "epoch": 0, "decision": "pause", "dashboard_url": "http://m/runs/r1"})
    body = json.loads(formats.render_body(fired, "slack"))
    assert set(body) == {"text"}
    text = body["text"]
    assert "attention_collapse" in text and "fired" in text and "r1" in text and "0.001" in text
    assert "<http://m/runs/r1|Open dashboard>" in text
    pause = build_event("decision.pause", {"run_id": "r1", "decision": "pause", "dashboard_url": "http://m/runs/r1",
                                           "reasons": [{"rule": "attention_collapse", "metric": "attention_max",
                                                        "value": 0.001}],
                                           "actions": [{"action": "scale_learning_rate", "factor": 0.5}]})
    text = formats.slack_text(pause)
    assert "pause" in text and "attention_collapse (attention_max=0.001)" in text and "scale_learning_rate x0.5" in text


def test_standard_body_is_the_envelope() -> None:
    event = build_event("decision.continue", {"run_id": "r"})
    assert json.loads(formats.render_body(event, "standard")) == event
    assert event["type"] in EVENT_TYPES and event["timestamp"].endswith("Z")


def test_backoff_grows_is_jittered_and_capped() -> None:
    for attempts in range(1, 6):
        delay = backoff_delay(attempts, base=1.0, cap=10.0)
        assert 0.5 * min(10.0, 2 ** (attempts - 1)) <= delay <= min(10.0, 2 ** (attempts - 1))
    assert backoff_delay(30, base=1.0, cap=10.0) <= 10.0
    assert backoff_delay(1, base=1.0, cap=10.0, retry_after=7) == 7
    assert backoff_delay(1, base=1.0, cap=10.0, retry_after=3600) == 10.0


def test_send_time_check_refuses_private_answers_before_connecting() -> None:
    from monitor.alerts.sending import AttemptSender
    from tests.support.receiver import Receiver

    sender = AttemptSender(timeout=2, allow_private=False, max_connections=2, user_agent="test")
    try:
        with Receiver() as receiver:
            for host in ("localhost", "[::ffff:7f00:1]", "[64:ff9b::7f00:1]"):
                outcome = sender.send(f"http://{host}:{receiver.port}/hook", b"{}", {}, deadline=5)
                assert not outcome.ok and (outcome.error or "").startswith("refused: "), (host, outcome)
            assert receiver.snapshot() == []
    finally:
        sender.close_client()
