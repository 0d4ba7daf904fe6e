"""A run whose database session is cut (as a PostgreSQL restart cuts it), without a
real restart: the server ends the session with pg_terminate_backend. The cause on
the record is the first error (not what the clean-up raised on the dead session),
and a pipeline that lost its lock with its session does not run on without it."""

from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError, connection

from conftest import child_database_url
from etl import locks, services
from etl.models import PipelineStepRun, RunStatus
from etl.recovery import connection_lost

pytestmark = pytest.mark.django_db(transaction=True)
CUT = "database connection lost (terminating connection due to administrator command)"


def cut_session() -> None:
    """What a PostgreSQL restart does to this process's session."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")


def test_connection_lost_names_the_first_cause_not_the_clean_up_errors():
    try:
        try:
            cut_session()
        except OperationalError:
            connection.cursor().execute("SELECT 1")  # what an error path does next, on the dead session
    except Exception as exc:  # noqa: BLE001 - the chain is what is tested
        assert "closed" in str(exc)  # the last error says little
        assert connection_lost(exc) == CUT
    finally:
        connection.close()


def test_errors_that_are_not_a_lost_session_are_not_called_one():
    with pytest.raises(OperationalError) as timeout, connection.cursor() as cur:
        try:
            cur.execute("SET statement_timeout = 10")
            cur.execute("SELECT pg_sleep(1)")
        finally:
            cur.execute("RESET statement_timeout")
    assert connection_lost(timeout.value) is None  # a statement timeout: the session is fine
    assert connection_lost(ValueError("bad row")) is None


def test_a_session_lock_whose_session_died_is_left_without_an_error():
    with locks.session_lock(locks.PIPELINE) as held:
        assert held
        cut_session_quietly()
    connection.close()
    assert not locks.is_held(locks.PIPELINE)


def cut_session_quietly() -> None:
    try:
        cut_session()
    except OperationalError:
        pass


def cut(*, options, progress=None):
    cut_session()


def test_a_step_whose_session_was_cut_fails_with_the_cause_and_the_run_goes_on_under_the_lock(registry, reference_data):
    registry.register_step("correct", order=40, run=cut)
    result = services.pipeline_run(steps=["correct", "validate"], continue_on_failure=True)
    assert [(s.name, s.status) for s in result.steps] == [
        ("correct", RunStatus.FAILED),
        ("validate", RunStatus.SUCCEEDED),  # the lock was taken again on the new session
    ]
    assert PipelineStepRun.objects.get(run_id=result.run_id, name="correct").error == f"OperationalError: {CUT}"
    assert result.status == RunStatus.FAILED and result.error == f"step correct failed: {CUT}"
    assert not locks.is_held(locks.PIPELINE)  # released at the end


def test_a_run_whose_lock_another_run_took_meanwhile_runs_nothing_more(registry, reference_data):
    other = psycopg.connect(child_database_url(), autocommit=True)

    def cut_then_taken(*, options, progress=None):
        cut_session_quietly()
        other.execute("SELECT pg_advisory_lock(%s, %s)", locks.PIPELINE.key())  # another run starts

    registry.register_step("correct", order=40, run=cut_then_taken)
    try:
        result = services.pipeline_run(steps=["correct", "validate"], continue_on_failure=True)
    finally:
        other.close()
    assert [(s.name, s.status) for s in result.steps] == [
        ("correct", RunStatus.SUCCEEDED),  # it handled its error itself
        ("validate", RunStatus.SKIPPED),
    ]
    assert "the database connection was lost during step correct" in result.steps[1].error
    assert result.status == RunStatus.FAILED
    assert result.error == "the database connection was lost during step correct; run it again"
