"""The case state machine and the notice gate, proven over random event sequences.

The central property: a notice can only ever carry breaches that are reportable at
the moment it is queued, and a person who attended as required is never reported
for not attending, whatever events arrive in whatever order.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain import lifecycle as lc
from gateway.domain import notices
from gateway.domain.lifecycle import CaseFacts, Status, TransitionError

D0 = date(2026, 11, 23)
days = st.integers(min_value=0, max_value=700).map(lambda n: D0 + timedelta(days=n))

events = st.one_of(
    st.builds(lc.Summoned, days),
    st.builds(lc.Attended, days),
    st.builds(lc.NoShow, days),
    st.builds(lc.TestTaken, days),
    st.builds(lc.TestMissed, days),
    st.just(lc.ConfirmNotice()),
    st.just(lc.NoticeDelivered()),
    st.builds(lc.Amended, st.none() | st.integers(1, 3), st.none() | st.integers(0, 3)),
    st.just(lc.Registered()),
    st.builds(lc.Closed, st.just("annet")),
    st.just(lc.Withdrawn()),
)
starts = st.builds(
    CaseFacts,
    status=st.sampled_from([Status.AWAITING_SUMMONS, Status.NEEDS_REGISTRATION]),
    required_attendances=st.integers(1, 3),
    tests_required=st.integers(0, 3),
)


def _now_for(event: lc.Event) -> datetime:
    """A moment at which the event can be true: before a meeting it books, after a
    date it reports; the clock-dependent checks themselves are tested in test_case_rules."""
    if isinstance(event, lc.Summoned):
        day = event.meeting_on - timedelta(days=1)
    elif getattr(event, "on", None) is not None:
        day = event.on + timedelta(days=1)  # type: ignore[union-attr]
    else:
        day = D0 + timedelta(days=800)
    return datetime.combine(day, time(12), tzinfo=UTC)


def apply_at(facts: CaseFacts, event: lc.Event) -> lc.Transition:
    return lc.apply(facts, event, _now_for(event))


def run(facts: CaseFacts, sequence: list[lc.Event]) -> list[tuple[CaseFacts, lc.Event, lc.Transition]]:
    trace = []
    for event in sequence:
        try:
            transition = apply_at(facts, event)
        except TransitionError:
            continue
        trace.append((facts, event, transition))
        facts = transition.facts
    return trace


@settings(max_examples=1500, deadline=None)
@given(starts, st.lists(events, max_size=30))
def test_a_queued_notice_only_carries_breaches_true_at_that_moment(
    start: CaseFacts, sequence: list[lc.Event]
) -> None:
    for _before, _event, transition in run(start, sequence):
        after = transition.facts
        for effect in transition.effects:
            if isinstance(effect, lc.QueueNotice):
                assert effect.breaches
                for breach in effect.breaches:
                    if breach.type == "ikke_mott":
                        assert after.attendances < after.required_attendances
                    else:
                        assert after.tests_required > 0 and after.tests_taken < after.tests_required
                assert notices.may_send(after, effect.breaches)


@settings(max_examples=1500, deadline=None)
@given(starts, st.lists(events, max_size=30))
def test_attended_as_required_never_leaves_an_attendance_notice_pending(
    start: CaseFacts, sequence: list[lc.Event]
) -> None:
    for _before, _event, transition in run(start, sequence):
        facts = transition.facts
        if facts.attendance_fulfilled and facts.notice in (
            notices.NoticeState.DRAFT,
            notices.NoticeState.QUEUED,
        ):
            # only a drug-test breach can keep a notice alive once attendance is met
            assert all(b.type == "prove_ikke_tatt" for b in notices.reportable_breaches(facts))
            assert notices.reportable_breaches(facts)
        if facts.attendance_fulfilled and facts.tests_fulfilled:
            assert facts.notice in (notices.NoticeState.NONE, notices.NoticeState.SENT)
            assert not notices.reportable_breaches(facts)


@settings(max_examples=2000, deadline=None)
@given(starts, st.lists(events, max_size=30))
def test_a_person_who_complied_is_never_sent_a_notice(start: CaseFacts, sequence: list[lc.Event]) -> None:
    """If the person never missed anything, no notice exists at any point."""
    clean = [e for e in sequence if not isinstance(e, (lc.NoShow, lc.TestMissed))]
    for _before, _event, transition in run(start, clean):
        assert not any(isinstance(e, (lc.DraftNotice, lc.QueueNotice)) for e in transition.effects)
        assert transition.facts.notice is notices.NoticeState.NONE


@settings(max_examples=2000, deadline=None)
@given(starts, st.lists(events, max_size=30))
def test_ended_cases_never_change_and_never_notify(start: CaseFacts, sequence: list[lc.Event]) -> None:
    facts = start
    for _before, _event, transition in run(start, sequence):
        facts = transition.facts
        if facts.status in lc.ENDED:
            assert facts.notice is not notices.NoticeState.QUEUED
            assert notices.reportable_breaches(facts) == ()
    if facts.status in lc.ENDED:
        for event in sequence:
            with pytest.raises(TransitionError):
                apply_at(facts, event)


@settings(max_examples=1000, deadline=None)
@given(starts, st.lists(events, max_size=30))
def test_status_is_always_one_of_the_documented_states(start: CaseFacts, sequence: list[lc.Event]) -> None:
    for _b, _e, transition in run(start, sequence):
        assert transition.facts.status in set(Status)
        assert transition.facts.attendances >= 0


def test_routine_no_show_then_confirm_then_delivered() -> None:
    facts = CaseFacts(Status.AWAITING_SUMMONS)
    facts = apply_at(facts, lc.Summoned(D0)).facts
    assert facts.status is Status.SUMMONED
    t = apply_at(facts, lc.NoShow(D0))
    assert t.facts.status is Status.NONCOMPLIANT
    assert t.effects == (lc.DraftNotice((notices.BreachFact("ikke_mott", D0),)),)
    t = apply_at(t.facts, lc.ConfirmNotice())
    assert isinstance(t.effects[0], lc.QueueNotice)
    t = apply_at(t.facts, lc.NoticeDelivered())
    assert t.facts.status is Status.NOTIFIED


def test_attending_after_a_no_show_cancels_the_draft() -> None:
    facts = apply_at(apply_at(CaseFacts(Status.AWAITING_SUMMONS), lc.Summoned(D0)).facts, lc.NoShow(D0)).facts
    t = apply_at(facts, lc.Attended(D0 + timedelta(days=3)))
    assert t.facts.status is Status.FULFILLED
    assert any(isinstance(e, lc.CancelNotice) for e in t.effects)
    with pytest.raises(TransitionError):
        apply_at(t.facts, lc.ConfirmNotice())


def test_two_required_attendances() -> None:
    facts = CaseFacts(Status.AWAITING_SUMMONS, required_attendances=2)
    facts = apply_at(apply_at(facts, lc.Summoned(D0)).facts, lc.Attended(D0)).facts
    assert facts.status is Status.AWAITING_SUMMONS
    # The second meeting is another day: the same day twice is one attendance (see test_case_rules).
    second = D0 + timedelta(days=7)
    facts = apply_at(apply_at(facts, lc.Summoned(second)).facts, lc.Attended(second)).facts
    assert facts.status is Status.FULFILLED


def test_test_missed_needs_a_testing_condition() -> None:
    with pytest.raises(TransitionError):
        apply_at(CaseFacts(Status.AWAITING_SUMMONS), lc.TestMissed(D0))


def test_resummons_after_no_show_withdraws_the_draft() -> None:
    facts = apply_at(apply_at(CaseFacts(Status.AWAITING_SUMMONS), lc.Summoned(D0)).facts, lc.NoShow(D0)).facts
    t = apply_at(facts, lc.Summoned(D0 + timedelta(days=7)))
    assert t.facts.status is Status.SUMMONED
    assert t.facts.notice is notices.NoticeState.NONE
    assert any(isinstance(e, lc.CancelNotice) for e in t.effects)


@settings(max_examples=1500, deadline=None)
@given(starts, st.lists(events, max_size=30))
def test_an_unsent_notice_only_ever_carries_reportable_breaches(
    start: CaseFacts, sequence: list[lc.Event]
) -> None:
    for _b, _e, transition in run(start, sequence):
        facts = transition.facts
        if facts.notice in (notices.NoticeState.DRAFT, notices.NoticeState.QUEUED):
            assert facts.notice_breaches
            assert set(facts.notice_breaches) <= set(notices.reportable_breaches(facts))
        else:
            assert facts.notice_breaches == ()


def test_queued_two_breach_notice_is_redrafted_when_one_stops_being_reportable() -> None:
    facts = CaseFacts(Status.AWAITING_SUMMONS, tests_required=1)
    facts = apply_at(facts, lc.Summoned(D0)).facts
    facts = apply_at(facts, lc.NoShow(D0)).facts
    facts = apply_at(facts, lc.TestMissed(D0 + timedelta(days=1))).facts
    facts = apply_at(facts, lc.ConfirmNotice()).facts
    assert facts.notice is notices.NoticeState.QUEUED and len(facts.notice_breaches) == 2
    t = apply_at(facts, lc.Attended(D0 + timedelta(days=2)))
    assert isinstance(t.effects[0], lc.CancelNotice)
    assert t.effects[1] == lc.DraftNotice((notices.BreachFact("prove_ikke_tatt", D0 + timedelta(days=1)),))
    assert t.facts.notice is notices.NoticeState.DRAFT
    assert t.facts.status is Status.NONCOMPLIANT
