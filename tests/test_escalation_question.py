"""The escalation question (issue 18.9): "may I escalate in epoch E?", gated while E < start."""

from __future__ import annotations

from monitor.schemas.escalation import DecisionAnswer
from tests.support.service import LiveService
from trainer_client.gate import EscalationGate

START = 5


def _run_with_exploding_epochs(service: LiveService, last_closed: int) -> None:
    """Escalation starts at epoch 5; every epoch up to ``last_closed`` breaks the grad-explosion gate."""
    assert service.client.put("/api/v1/runs/q", json={"escalation_start_epoch": START}).status_code == 201
    for epoch in range(last_closed + 1):
        body = {"epoch": epoch, "grad_explosion_events": 100}
        assert service.json("POST", "/api/v1/runs/q/epochs", json=body)["accepted"] is True


def _ask(service: LiveService, epoch: int | None = None) -> dict:
    params = {"run_id": "q"} if epoch is None else {"run_id": "q", "epoch": epoch}
    answer = service.json("GET", "/escalation/decision", params=params)
    DecisionAnswer.model_validate(answer)
    return answer


def test_the_first_escalation_epoch_is_gated(service: LiveService) -> None:
    _run_with_exploding_epochs(service, last_closed=START - 1)  # the trainer is about to start epoch 5
    default = _ask(service)
    assert default["for_epoch"] == START, "default: the epoch after the last closed one"
    assert default["decision"] == "pause" and default["reasons"][0]["rule"] == "grad_explosion"
    assert _ask(service, START) == default
    before = _ask(service, START - 1)
    assert before["for_epoch"] == START - 1 and before["decision"] == "continue"
    assert "starts at epoch 5" in before["note"] and before["warnings"]
    assert _ask(service, START + 3)["decision"] == "pause"


def test_before_the_start_the_answer_is_continue_with_a_word(service: LiveService) -> None:
    _run_with_exploding_epochs(service, last_closed=START - 2)  # about to start epoch 4
    default = _ask(service)
    assert default["for_epoch"] == START - 1 and default["decision"] == "continue" and default["note"]
    assert _ask(service, START)["decision"] == "pause"


def test_a_bad_epoch_is_a_documented_422(sqlite_service: LiveService) -> None:
    sqlite_service.client.put("/api/v1/runs/q", json={})
    response = sqlite_service.client.get("/escalation/decision", params={"run_id": "q", "epoch": "soon"})
    assert response.status_code == 422
    assert all(set(item) == {"type", "loc", "msg"} for item in response.json()["detail"])
    assert "soon" not in response.text


def test_the_gate_asks_about_the_epoch_it_is_given(service: LiveService) -> None:
    _run_with_exploding_epochs(service, last_closed=START - 2)
    gate = EscalationGate(service.base_url, service.token, "q", timeout=10.0)
    try:
        assert gate.should_escalate(epoch=START - 1) is True
        assert gate.should_escalate(epoch=START) is False
        assert gate.decision().epoch == START - 2
    finally:
        gate.close()


def test_the_fast_path_reads_run_id_and_epoch_only() -> None:
    from monitor.api.decision_poll import poll_question

    assert poll_question(b"run_id=q") == ("q", None)
    assert poll_question(b"run_id=q&epoch=5") == ("q", 5)
    assert poll_question(b"epoch=0&run_id=q") == ("q", 0)
    for other in (b"run_id=q&epoch=05", b"run_id=q&epoch=-1", b"run_id=q&epoch=5&epoch=6", b"epoch=5",
                  b"run_id=q&x=1", b"run_id=q&epoch=" + b"9" * 30):
        assert poll_question(other) is None, other
