"""The web presenter: what the browsers watching a game are sent."""

from __future__ import annotations

import asyncio
import json

from web.presenter import QUEUE_SIZE, WebPresenter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drain(queue: asyncio.Queue) -> list[tuple[str, dict[str, object]]]:  # type: ignore[type-arg]
    events = []
    while not queue.empty():
        event = queue.get_nowait()
        assert event.encode().startswith(f"event: {event.kind}\ndata: ")
        events.append((event.kind, json.loads(event.encode().split("data: ", 1)[1])))
    return events


def test_a_draft_streamed_token_by_token_reaches_browsers_at_most_twice_a_second() -> None:
    clock = Clock()
    presenter = WebPresenter(clock=clock)
    queue = presenter.subscribe("web:r:r")
    for text in ("Rain", "Rain falls", "Rain falls on"):
        presenter.draft("web:r:r", text)
    clock.now += 0.6
    presenter.draft("web:r:r", "Rain falls on the shrine")
    presenter.draft("web:r:r", None)  # the writing failed: always sent, the draft must go
    assert drain(queue) == [("draft", {"text": "Rain"}), ("draft", {"text": "Rain falls on the shrine"}),
                            ("draft", {"text": None})]


def test_a_browser_that_falls_behind_misses_events_and_one_that_left_gets_none() -> None:
    presenter = WebPresenter()
    slow, other = presenter.subscribe("web:r:r"), presenter.subscribe("web:s:s")
    for n in range(QUEUE_SIZE + 10):
        presenter.publish("web:r:r", "votes", {"votes": [n]})
    assert slow.qsize() == QUEUE_SIZE and other.empty()  # bounded, and only the game's own watchers
    presenter.unsubscribe("web:r:r", slow)
    presenter.publish("web:r:r", "notice", {"text": "hello"})
    assert presenter.watchers("web:r:r") == 0 and slow.qsize() == QUEUE_SIZE
