"""Intake of a backlog: many messages in one transaction, each in its own savepoint.

Why: one transaction per message pays two fsynced commits per message (the attempt,
then the message), and after an outage a backlog of thousands of orders waits on
those fsyncs. A batch pays two commits in all. The guarantees stay those of
``pipeline.process``:

- *Nothing acknowledged before it is durable.* The batch returns its results only
  after its one commit; the caller acknowledges at the source after that.
- *One bad message spoils nothing else.* Each message is judged inside a savepoint.
  A message that raises there (a conflict with another instance, a bug) is rolled
  back alone and then taken again through ``pipeline.process``, the one-message path
  with its own handling of conflicts and crashes.
- *A message that kills the process cannot loop the daemon.* Before the batch, every
  fresh message gets an attempt row, committed; the batch's commit deletes them. If
  the process dies mid-batch, those rows survive, and next time each of those
  messages is a suspect: suspects are never batched but go one by one through
  ``pipeline.process``, which counts their attempts just before each is judged. The
  message that really kills the process therefore reaches
  ``gateway.max_intake_attempts`` and goes to quarantine, while the innocent ones
  behind it are taken in, and not counted as crashes they did not cause.
- *A signal ends it soon.* ``stop`` (and ``MAX_SECONDS``) end the batch before the
  next message: what was judged is committed, the rest have their attempt rows
  removed in the same commit and are left untouched (at their source after a stop,
  in the next batch after ``MAX_SECONDS``).

If the batch as a whole cannot commit, every message of it falls back to the
one-message path, so a batch is only ever an optimisation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import db
from gateway.context import Gateway
from gateway.intake.pipeline import (
    is_storage_trouble,
    log_result,
    process,
    short_id,
    storage_trouble,
    take_in,
)
from gateway.messages.results import IntakeResult
from gateway.models import IntakeAttempt
from gateway.ports import RawMessage

log = logging.getLogger("gateway.intake")

MAX_MESSAGES = 100
"""Messages per batch: enough to share the fsyncs, few enough that a batch is short."""

MAX_BYTES = 16 * 1024 * 1024
"""Content per batch: a batch is closed once it holds this much (so it may hold one
message more, and a larger message is a batch of its own)."""

MAX_SECONDS = 2.0
"""Judging time per batch. On SQLite the batch holds the write lock that long at most
(the tick and the dispatcher wait for it), and a hostile mail may take a second."""


@dataclass
class _Fresh:
    index: int
    message: RawMessage


def process_batch(
    gw: Gateway, messages: Sequence[RawMessage], *, stop: threading.Event | None = None
) -> list[IntakeResult | None]:
    """Take ``messages`` in; one result per message, in order, after the commit.

    ``None`` for a message the batch did not reach (``stop`` was set, or
    ``MAX_SECONDS`` passed): it was not touched and stays at its source. Never
    raises for bad input, like ``pipeline.process``.
    """
    results: list[IntakeResult | None] = [None] * len(messages)
    if not messages:
        return results
    try:
        suspects = _suspects(gw, messages)
    except Exception as exc:
        return _all_failed(exc, messages)
    fresh = [_Fresh(i, m) for i, m in enumerate(messages) if _key(m) not in suspects]
    for i, message in enumerate(messages):
        if _key(message) in suspects:
            if stop is not None and stop.is_set():
                return results
            results[i] = alone = process(gw, message)  # counts its attempt, alone
            if is_storage_trouble(alone):
                return results  # the rest would fail the same way
    if fresh:
        try:
            _record_fresh(gw, fresh)
        except IntegrityError:
            _one_by_one(gw, fresh, results, stop)  # another instance or command took one
            return results
        except Exception as exc:
            return _all_failed(exc, messages)
        _judge_fresh(gw, fresh, results, stop)
    return results


def _key(message: RawMessage) -> tuple[str, str]:
    return message.channel, message.external_id


def _suspects(gw: Gateway, messages: Sequence[RawMessage]) -> set[tuple[str, str]]:
    """The messages that have an attempt row: an earlier try did not finish."""
    keys = list({_key(m) for m in messages})
    with gw.session() as session:
        rows = session.execute(
            select(IntakeAttempt.channel, IntakeAttempt.external_id).where(
                tuple_(IntakeAttempt.channel, IntakeAttempt.external_id).in_(keys)
            )
        )
        return {(channel, external_id) for channel, external_id in rows}


def _record_fresh(gw: Gateway, fresh: list[_Fresh]) -> None:
    """One committed attempt row per fresh message, before any of them is judged."""
    now = gw.clock.now()
    rows = {_key(f.message): f for f in fresh}  # the same file twice in one poll: one row
    with gw.session() as session:
        session.add_all(
            IntakeAttempt(channel=channel, external_id=external_id, attempts=1, last_at=now)
            for channel, external_id in rows
        )


def _one_by_one(
    gw: Gateway, fresh: list[_Fresh], results: list[IntakeResult | None], stop: threading.Event | None
) -> None:
    for item in fresh:
        if stop is not None and stop.is_set():
            return
        results[item.index] = process(gw, item.message)


def _judge_fresh(
    gw: Gateway, fresh: list[_Fresh], results: list[IntakeResult | None], stop: threading.Event | None
) -> None:
    started = time.monotonic()
    judged: dict[int, IntakeResult] = {}
    retry: list[_Fresh] = []
    try:
        with gw.session() as session:
            reached = 0
            for item in fresh:
                if judged and (
                    (stop is not None and stop.is_set()) or time.monotonic() - started > MAX_SECONDS
                ):
                    break
                reached += 1
                result = _judge_one(gw, session, item.message)
                if result is None:
                    retry.append(item)
                else:
                    judged[item.index] = result
            # settled ones are no longer crash suspects, unreached ones were not attempted
            settled = [f.message for f in fresh[:reached] if f.index in judged]
            _forget_attempts(session, settled + [f.message for f in fresh[reached:]])
    except Exception as exc:
        if db.is_storage_full(exc) or db.is_read_only(exc):
            failed = _storage_result(exc, fresh[0].message)
            for item in fresh:
                results[item.index] = failed
            return
        log.warning(
            "intake: a batch of %d could not be committed (%s); taking its messages one by one",
            len(fresh),
            type(exc).__name__,
        )
        _one_by_one(gw, fresh, results, stop)
        return
    for item in fresh:
        if item.index in judged:
            results[item.index] = judged[item.index]
            log_result(item.message, judged[item.index])
    _one_by_one(gw, retry, results, None)  # judged alone: the batch already took their turn


def _judge_one(gw: Gateway, session: Session, message: RawMessage) -> IntakeResult | None:
    """Judge ``message`` in a savepoint; None if it raised (then it is taken again alone)."""
    mark = db.after_commit_mark(session)
    try:
        with session.begin_nested():
            result = take_in(gw, session, message)
        return result  # its attempt row goes with the batch's (``_forget_attempts``)
    except Exception as exc:
        db.drop_after_commit(session, mark)
        if db.is_storage_full(exc) or db.is_read_only(exc):
            raise  # the whole batch waits at its source
        log.debug(
            "intake %s/%s: %s in a batch; taking it alone",
            message.channel,
            short_id(message.external_id),
            type(exc).__name__,
        )
        return None


def _forget_attempts(session: Session, messages: list[RawMessage]) -> None:
    """Remove the attempt rows of ``messages``, in one statement, in the batch's transaction."""
    if messages:
        session.execute(
            delete(IntakeAttempt).where(
                tuple_(IntakeAttempt.channel, IntakeAttempt.external_id).in_([_key(m) for m in messages])
            )
        )


def _all_failed(exc: Exception, messages: Sequence[RawMessage]) -> list[IntakeResult | None]:
    """The database could not even be read or written: every message waits at its source."""
    return [_storage_result(exc, messages[0])] * len(messages)


def _storage_result(exc: Exception, first: RawMessage) -> IntakeResult:
    return storage_trouble(exc, (first.channel, short_id(first.external_id)))
