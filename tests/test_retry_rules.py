"""Tests of gameball_async._retry_rules: the retry rules as one pure function.

The matrix crosses every method, every outcome kind, the first and the last
try, with and without a server delay, and the policy's switches on and off;
the expectation is read from a table that states each outcome's rule.
"""

from __future__ import annotations

import itertools
import random

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameball_async import RetryPolicy
from gameball_async._policy import retry_delay
from gameball_async._retry_rules import Action, Decision, Method, Outcome, decide

METHODS: tuple[Method, ...] = ("GET", "DELETE", "POST")
SWITCHES = ("retry_rate_limited", "retry_server_errors", "retry_network_errors")

# Each outcome's rule: may a creation that got it have created a job (then it is
# ambiguous), and what turns its retries off: a policy switch, or nothing
# ("always": retried whatever the switches) or it is final ("never").
RULES: dict[Outcome, tuple[bool, str]] = {
    Outcome.RATE_LIMITED: (False, "retry_rate_limited"),
    Outcome.UNAVAILABLE: (False, "retry_server_errors"),
    Outcome.SERVER_ERROR: (True, "retry_server_errors"),
    Outcome.CLIENT_ERROR: (False, "never"),
    Outcome.REDIRECT: (True, "never"),
    Outcome.NEVER_CONNECTED: (False, "retry_network_errors"),
    Outcome.TLS_FAILED: (False, "never"),
    Outcome.DROPPED: (True, "retry_network_errors"),
    Outcome.TIMEOUT: (True, "retry_network_errors"),
    Outcome.UNDECODABLE: (True, "always"),
}

ON = RetryPolicy(attempts=3, backoff=0.5, max_backoff=8.0, max_retry_after=120.0)
OFF = attrs.evolve(ON, **dict.fromkeys(SWITCHES, False))
TRIES = {"first": 1, "last": ON.attempts}


def test_the_table_names_every_outcome() -> None:
    assert set(RULES) == set(Outcome)


def _expected_action(method: Method, outcome: Outcome, attempt: int, policy: RetryPolicy) -> Action:
    may_have_landed, switch = RULES[outcome]
    if method == "POST" and may_have_landed:
        return Action.AMBIGUOUS
    retried = switch == "always" or (switch != "never" and getattr(policy, switch))
    if not retried or attempt >= policy.attempts:
        return Action.RAISE
    return Action.RETRY


MATRIX = list(itertools.product(METHODS, Outcome, TRIES, (None, 2.0), ("on", "off")))


@pytest.mark.parametrize(
    ("method", "outcome", "when", "retry_after", "switches"),
    MATRIX,
    ids=[f"{m}-{o.name}-{w}-ra{r}-{s}" for m, o, w, r, s in MATRIX],
)
def test_the_matrix(
    method: Method, outcome: Outcome, when: str, retry_after: float | None, switches: str
) -> None:
    policy = ON if switches == "on" else OFF
    attempt = TRIES[when]
    decision = decide(method, outcome, attempt, policy, retry_after, rng=random.Random(7))
    action = _expected_action(method, outcome, attempt, policy)
    assert decision.action is action
    if action is not Action.RETRY:
        assert decision.delay == 0.0
        # gave up: a kind that is retried, raised because the tries ran out
        assert decision.gave_up == (
            action is Action.RAISE and _expected_action(method, outcome, 1, policy) is Action.RETRY
        )
        return
    assert not decision.gave_up
    if retry_after is None:
        # full jitter below backoff * 2**0, the same draw as retry_delay's
        assert 0.0 <= decision.delay <= ON.backoff
        assert decision.delay == retry_delay(policy, 0, retry_after=None, rng=random.Random(7))
    else:
        assert decision.delay == retry_after  # the floor, above the jitter's cap


def test_the_matrix_size() -> None:
    assert len(MATRIX) == 3 * len(Outcome) * 2 * 2 * 2 == 240


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_turns_off_its_outcomes_alone(switch: str) -> None:
    policy = attrs.evolve(ON, **{switch: False})
    for method, outcome in itertools.product(METHODS, Outcome):
        decision = decide(method, outcome, 1, policy, None, rng=random.Random(1))
        baseline = decide(method, outcome, 1, ON, None, rng=random.Random(1))
        if RULES[outcome][1] == switch and baseline.action is Action.RETRY:
            assert decision == Decision(Action.RAISE)
        else:
            assert decision == baseline


TOO_LONG = list(itertools.product(METHODS, Outcome))


@pytest.mark.parametrize(
    ("method", "outcome"), TOO_LONG, ids=[f"{m}-{o.name}" for m, o in TOO_LONG]
)
def test_a_server_asking_too_long_gets_the_error_at_once(method: Method, outcome: Outcome) -> None:
    clamped = ON.max_retry_after
    decision = decide(method, outcome, 1, ON, clamped, too_long=True, rng=random.Random(1))
    first_try = _expected_action(method, outcome, 1, ON)
    if first_try is not Action.RETRY:
        assert decision == Decision(first_try)
    elif outcome is Outcome.UNDECODABLE:
        # a 2xx that is not JSON is retried all the same, after the clamped delay
        assert decision == Decision(Action.RETRY, delay=clamped)
    else:
        assert decision == Decision(Action.RAISE, gave_up=True)


@pytest.mark.parametrize("method", METHODS)
def test_one_attempt_is_never_retried(method: Method) -> None:
    once = attrs.evolve(ON, attempts=1)
    for outcome in Outcome:
        decision = decide(method, outcome, 1, once, None, rng=random.Random(1))
        assert decision.action is not Action.RETRY


def test_the_creation_rules_in_words() -> None:
    def post(outcome: Outcome) -> Action:
        return decide("POST", outcome, 1, ON, None, rng=random.Random(1)).action

    # provably not landed: retried
    assert post(Outcome.NEVER_CONNECTED) is Action.RETRY
    assert post(Outcome.RATE_LIMITED) is Action.RETRY
    assert post(Outcome.UNAVAILABLE) is Action.RETRY
    # may have landed: ambiguous, even with every switch off and no tries left
    for outcome in (Outcome.DROPPED, Outcome.TIMEOUT, Outcome.SERVER_ERROR, Outcome.REDIRECT):
        assert post(outcome) is Action.AMBIGUOUS
        assert decide("POST", outcome, 3, OFF, None, rng=random.Random(1)).action is (
            Action.AMBIGUOUS
        )
    assert post(Outcome.UNDECODABLE) is Action.AMBIGUOUS
    # final: nothing was created, nothing to retry
    assert post(Outcome.CLIENT_ERROR) is Action.RAISE
    assert post(Outcome.TLS_FAILED) is Action.RAISE


def test_later_tries_wait_longer_up_to_the_cap() -> None:
    policy = attrs.evolve(ON, attempts=50, backoff=1.0, max_backoff=4.0)
    for attempt, cap in ((1, 1.0), (2, 2.0), (3, 4.0), (40, 4.0)):
        delays = [
            decide("GET", Outcome.UNAVAILABLE, attempt, policy, None, rng=random.Random(s)).delay
            for s in range(200)
        ]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > 0.8 * cap


_POLICIES = st.builds(
    RetryPolicy,
    attempts=st.integers(min_value=1, max_value=20),
    backoff=st.floats(min_value=0.0, max_value=1e3),
    max_backoff=st.floats(min_value=0.0, max_value=1e4),
    max_retry_after=st.floats(min_value=0.0, max_value=1e4),
    retry_rate_limited=st.booleans(),
    retry_server_errors=st.booleans(),
    retry_network_errors=st.booleans(),
)


@given(
    method=st.sampled_from(METHODS),
    outcome=st.sampled_from(Outcome),
    attempt=st.integers(min_value=1, max_value=10**9),
    policy=_POLICIES,
    share=st.none() | st.floats(min_value=0.0, max_value=1.0),
    too_long=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_the_delay_stays_within_the_clamps_for_any_try(
    method: Method,
    outcome: Outcome,
    attempt: int,
    policy: RetryPolicy,
    share: float | None,
    too_long: bool,
    seed: int,
) -> None:
    retry_after = None if share is None else share * policy.max_retry_after
    decision = decide(
        method, outcome, attempt, policy, retry_after, too_long=too_long, rng=random.Random(seed)
    )
    if decision.action is Action.RETRY:
        assert attempt < policy.attempts
        floor = retry_after or 0.0
        assert floor <= decision.delay <= max(policy.max_backoff, floor)
        assert decision.delay <= max(policy.max_backoff, policy.max_retry_after)
    else:
        assert decision.delay == 0.0
    if decision.action is Action.AMBIGUOUS:
        assert method == "POST"
        assert not decision.gave_up
    # the same draw gives the same decision: nothing else goes into it
    again = decide(
        method, outcome, attempt, policy, retry_after, too_long=too_long, rng=random.Random(seed)
    )
    assert again == decision
