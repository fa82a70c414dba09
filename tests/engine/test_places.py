from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.fakes import FakeWriter, MemoryStore, RecordingPresenter
from engine.places import Place
from engine.ports import tenant_of
from engine.tables import Tables
from engine.turns import StoryEngine

part = st.text(min_size=1, max_size=12).filter(lambda text: ":" not in text)


@given(part, part, st.text(min_size=1, max_size=20))
def test_a_place_written_out_reads_back_as_itself(frontend: str, server: str, channel: str) -> None:
    place = Place(frontend, server, channel)
    assert Place.parse(str(place)) == place


def test_what_names_no_place_is_refused_or_read_as_none() -> None:
    assert Place.parse("discord:1") is None and Place.parse("web::room") is None and Place.parse("") is None
    with pytest.raises(ValueError, match="server"):
        Place("web", "a:b", "room")
    with pytest.raises(ValueError, match="channel"):
        Place("web", "room", "")


def test_frontends_read_only_their_own_places_and_fairness_is_per_server() -> None:
    tables = Tables(StoryEngine(FakeWriter()), MemoryStore(), RecordingPresenter(), prefix="web")
    assert tables.place("room1", "room1") == "web:room1:room1"
    assert tables.server_of("web:room1:room1") == "room1" and tables.server_of("discord:1:10") is None
    assert tenant_of("discord:1:10") == tenant_of("discord:1:11") == "discord:1"
    assert tenant_of("web:room1:room1") != tenant_of("web:room2:room2")
    assert tenant_of("not a place") == "not a place"
