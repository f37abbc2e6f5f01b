"""Connect stage: read every remote model's card before Ray starts, so endpoint problems cost seconds.

A setting a remote model lacks (a V2 server that does not state its sampling rate, say) or a refused
token is the user's to fix: every such problem of every model is reported in one error, before the
~20 s of Ray start-up. An endpoint that does not answer at all (refused, unresolvable, silent past the
connect deadline) is different: the run goes on with the other models, and the lost one's records are
reported (results.json `counts[].lost`, exit status partial). A run with no model left stops there.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from orchestrator.endpoints import EndpointError, open_client
from orchestrator.experiment import Experiment, ModelEntry

log = logging.getLogger(__name__)


@dataclass
class Remote:
    """Remote models' cards, the models given up because no replica answered, and notes for `errors`."""

    cards: dict[str, Any] = field(default_factory=dict)  # model -> card
    lost: dict[str, str] = field(default_factory=dict)  # model -> why no replica could be reached
    notes: dict[str, list[str]] = field(default_factory=dict)  # model -> assumptions made (warnings)


def _card(model: ModelEntry, timeout_s: float) -> Any:
    """The card from the first replica that answers; raise the last EndpointError when none does."""
    error: EndpointError | None = None
    for address in model.endpoints:
        try:
            client, card = open_client(address, model.connection, timeout_s)
        except EndpointError as err:
            if not err.unreachable:
                raise
            error = err
            continue
        client.close()
        return card
    assert error is not None
    raise error


def connect_remote(exp: Experiment) -> Remote:
    """Read the cards of the experiment's remote models; raise one EndpointError listing every fixable problem."""
    out, problems = Remote(), []
    for model in exp.models:
        if not model.remote:
            continue
        try:
            out.cards[model.name] = card = _card(model, exp.runtime["timeout_s"])
        except EndpointError as err:
            if err.unreachable:
                out.lost[model.name] = str(err)
            else:
                problems.append(str(err))
            continue
        if getattr(card, "notes", ()):
            out.notes[model.name] = list(card.notes)
    if problems:
        raise EndpointError("\n  ".join(["remote model(s) cannot be used as configured:", *problems]))
    if out.lost and len(out.lost) == len(exp.models):
        raise EndpointError("no model is reachable:\n  " + "\n  ".join(out.lost.values()), unreachable=True)
    for name, reason in out.lost.items():
        log.warning("%s is left out of this run: %s", name, reason)
    return out
