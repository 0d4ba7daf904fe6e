"""Assertions and waits the browser tests share."""

from __future__ import annotations

import time
from collections.abc import Callable


class ConsoleErrors(AssertionError):
    """The page logged errors (console, uncaught exceptions, CSP violations, HTTP >= 400).

    A subclass of its own so that a test marked `xfail(raises=ConsoleErrors)` for a
    known console error still fails for real on any other broken assertion."""


def assert_no_console_errors(page) -> None:
    if page.console_errors != []:
        raise ConsoleErrors("errors in the browser console:\n" + "\n".join(page.console_errors))


def wait_until(check: Callable[[], object], *, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Call `check` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value {value!r})")
        time.sleep(interval)


def run_admin_action(page, *, object_pk: int, action: str) -> None:
    """Tick one row of the current change list, pick `action` and press Go."""
    page.check(f'input.action-select[value="{object_pk}"]')
    page.select_option('select[name="action"]', action)
    page.click('button[name="index"]')
    page.wait_for_load_state("load")


def messages(page) -> list[str]:
    return [m.strip() for m in page.locator("ul.messagelist li").all_inner_texts()]
