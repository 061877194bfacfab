"""The CLI's one progress bar, as backup, verify and retention draw it on a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from kronika.cli import output


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stderr as a terminal 120 columns wide, written to a buffer."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, highlight=False)
    monkeypatch.setattr(output, "err", console)
    return screen


def last_frame(screen: io.StringIO) -> str:
    """What the bar showed when it stopped (Rich redraws the line from its start)."""
    return screen.getvalue().rsplit("\r\x1b[2K", 1)[-1]


def test_a_phase_shows_its_label_and_percentage(terminal: io.StringIO) -> None:
    with output.ProgressBar(False) as bar:  # as kronika backup and restore draw it
        bar.phase("events", 200)
        bar.done(50)
    assert "events" in last_frame(terminal) and "25%" in last_frame(terminal)


def test_a_new_phase_replaces_the_current_one(terminal: io.StringIO) -> None:
    with output.ProgressBar(False) as bar:
        bar.phase("events", 200)
        bar.done(200)
        bar.phase("streams", 10)
        bar.done(5)
    frame = last_frame(terminal)
    assert "streams" in frame and "50%" in frame
    assert "events" not in frame


def test_fields_and_totals_can_change_as_work_is_found(terminal: io.StringIO) -> None:
    text = "verify {task.fields[events]:>12,} events"
    with output.ProgressBar(False, text=text) as bar:  # as kronika verify draws it
        bar.phase("verify", None, events=0)
        bar.done(300, total=600, events=1234)
    assert "verify        1,234 events" in terminal.getvalue()
    assert "50%" in terminal.getvalue()


def test_counts_show_rows_done_of_the_total(terminal: io.StringIO) -> None:
    with output.ProgressBar(False, text="retention", counts=True, transient=False) as bar:
        bar.phase("retention", 40)
        bar.advance(15)
        bar.advance(5)
    assert "20/40" in terminal.getvalue()


def test_quiet_draws_nothing_and_ignores_updates(terminal: io.StringIO) -> None:
    with output.ProgressBar(True) as bar:
        bar.done(5)  # before any phase: nothing to move
        bar.phase("events", 10)
        bar.advance(3)
    assert terminal.getvalue() == ""
