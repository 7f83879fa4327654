"""Operators' credentials: what is kept of a token, the CSRF token a session's forms carry,
the names allowed, and where a sign-in may send the browser back to."""

from __future__ import annotations

import pytest

from opendispatch.auth.operators import (
    csrf_token,
    csrf_token_matches,
    new_secret,
    operator_name_problem,
    secret_hash,
)
from opendispatch.dashboard.app import _safe_next


def test_a_secret_is_256_random_bits_kept_only_as_its_sha256() -> None:
    token = new_secret()
    assert len(token) == 43
    assert token != new_secret()
    assert len(secret_hash(token)) == 64
    assert token not in secret_hash(token)


def test_a_sessions_csrf_token_is_its_own_and_nothing_else_matches() -> None:
    session, other = new_secret(), new_secret()
    assert csrf_token_matches(session, csrf_token(session))
    for wrong in (None, "", csrf_token(other), csrf_token(session)[:-1], secret_hash(session)):
        assert not csrf_token_matches(session, wrong)
    assert not csrf_token_matches(session, "\udcff" + csrf_token(session)[1:])


@pytest.mark.parametrize("name", ["alice", "ops.team-1", "a@example.com", "A" * 64])
def test_operator_names_that_read_well_in_logs_are_allowed(name: str) -> None:
    assert operator_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "two words", "-dash", "a" * 65, "bad\nline", "é"])
def test_operator_names_with_spaces_controls_or_odd_starts_are_refused(name: str) -> None:
    assert operator_name_problem(name) is not None


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/workflows?status=error", "/workflows?status=error"),
        ("?window=7d", "?window=7d"),
        ("//evil.example/", None),
        ("https://evil.example/", None),
        ("/\\evil.example", None),
        ("/x\r\nLocation: y", None),
        ("", None),
        (None, None),
    ],
)
def test_after_signing_in_the_browser_goes_back_only_to_a_dashboard_page(
    given: str | None, kept: str | None
) -> None:
    assert _safe_next(given) == kept
