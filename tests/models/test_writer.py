from __future__ import annotations

import asyncio
import time

from data.tracking import TrackingTarget
from engine.fakes import FakeWriter
from engine.ports import WriteRequest
from engine.prompt_format import StoryContext, Turn, parse_output
from models.train_job import TrainOutcome
from models.writer import ModelWriter
from tests.models.conftest import MODEL

CONTEXTS = [StoryContext("mecha", "A pilot wakes.", (), "", (Turn("The hangar hums.", choice),))
            for choice in ("Run to the cockpit", "Hide under the crane", "Call Aoi-senpai")]
REQUESTS = [WriteRequest(context) for context in CONTEXTS]


def test_model_writer_batches_on_a_worker_thread(trained: TrainOutcome, tracking: TrackingTarget) -> None:
    async def scenario() -> tuple[list[str], list[str], int]:
        writer = await ModelWriter.load(tracking, f"models:/{MODEL}@challenger")
        ticks = 0
        done = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        beat = asyncio.create_task(heartbeat())
        written = await writer.write([*REQUESTS[:2], WriteRequest(CONTEXTS[2], must_end=True)])
        done.set()
        await beat
        return [w.text for w in written], [w.model_version for w in written], ticks

    started = time.monotonic()
    texts, versions, ticks = asyncio.run(scenario())
    assert len(texts) == 3 and versions == [f"{MODEL}/1"] * 3
    scenes = [parse_output(text) for text in texts]  # constrained decoding: every answer parses (or raises)
    assert all(len(scene.narration.split()) >= 5 for scene in scenes)
    assert all(scene.is_ending or 2 <= len(scene.choices) <= 4 for scene in scenes)
    assert parse_output(texts[2]).is_ending  # must_end is enforced by the grammar
    # The loop kept running while the model wrote: it ticked many times, not once.
    assert ticks > 5, (ticks, time.monotonic() - started)


def test_fake_writer_answers_parse() -> None:
    writer = FakeWriter(["<|scene|>Scripted.<|ending|>good<|end|>"])
    first, second, third = asyncio.run(writer.write([*REQUESTS[:2], WriteRequest(CONTEXTS[2], must_end=True)]))
    assert parse_output(first.text).ending == "good"
    assert len(parse_output(second.text).choices) == 3
    assert "hide under the crane" in parse_output(second.text).narration
    assert parse_output(third.text).is_ending
    assert len(writer.calls) == 1 and len(writer.calls[0]) == 3
