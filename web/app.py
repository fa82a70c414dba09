"""The web frontend: a JSON API (with its OpenAPI schema at ``/docs``) and the pages that use it.

A thin adapter over ``engine.tables.Tables``: each endpoint parses its request, calls Tables and renders what
comes back; the rules (who may steer, votes and their timers, ratings, feedback) are Tables'. A web room is a
random, unguessable id that stands for both the server and the channel of a Discord game, so each room holds
one game and has its own settings (the defaults).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from engine.errors import (
    CooldownError,
    CyoaError,
    GameRuleError,
    Hint,
    StorytellerBusyError,
    StorytellerFailedError,
)
from engine.game import Game
from engine.genres import GENRES
from engine.tables import NICKNAME_LENGTH, Tables
from engine.votes import tally
from web.guard import Guard
from web.limits import RateLimits
from web.presenter import WebPresenter
from web.service import Service, add_service_routes

T = TypeVar("T")

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_ROOM = re.compile(r"^[A-Za-z0-9_-]{8,32}$")
KEEPALIVE_SECONDS = 15.0  # a comment line on a quiet event stream, so proxies do not close it
MAX_WATCHERS = 100  # event streams open on one game
# An API call answers within this, whatever the model is doing: a start, a retry or the vote that closes a vote
# waits this long for its scene, then answers with the game as it is ("writing"); the scene reaches every open
# page by its event stream. Keeps every call within the 2 s a player will wait for a click to answer.
RESPOND_WITHIN_SECONDS = 1.5


class NewGame(BaseModel):
    genre: str | None = Field(default=None, max_length=40, description="a genre id from /api/genres; none: any")
    premise: str | None = Field(default=None, max_length=300, description="how the story begins; none: a bundled one")


class VoteBody(BaseModel):
    choice: int = Field(ge=0, le=20, description="the index of the choice, from 0")


class RateBody(BaseModel):
    mark: Literal["star", "up", "down"]
    on: bool = Field(default=True, description="false takes the mark back")
    scene: int | None = Field(default=None, ge=0, description="the scene's index; none: the current scene")


class FeedbackBody(BaseModel):
    text: str = Field(min_length=1, max_length=1000)


class MeBody(BaseModel):
    nickname: str | None = Field(default=None, max_length=NICKNAME_LENGTH,
                                 description="the name the other players see (blank: none)")
    opted_out: bool | None = Field(default=None, description="true: this player's votes and ratings never train "
                                                             "a model")


class NoSuchGame(HTTPException):
    def __init__(self, room: str) -> None:
        super().__init__(404, f"there is no game in room {room[:40]!r}; start one at /")


def status_of(exc: CyoaError) -> int:
    if isinstance(exc, CooldownError | StorytellerBusyError):
        return 429
    if isinstance(exc, StorytellerFailedError):
        return 503
    if isinstance(exc, GameRuleError):
        return 409  # a move the rules do not allow now
    return 400  # BlockedTextError and the other refusals of what was sent


def scene_view(game: Game, index: int) -> dict[str, Any]:
    shown = game.path[index]
    return {"index": index, "narration": shown.scene.narration, "choices": list(shown.scene.choices),
            "ending": shown.scene.ending, "chosen": shown.chosen}


def view_counts(game: Game) -> list[int]:
    """The votes on the open scene, a count per choice."""
    counts = tally(game)
    return [counts.get(i, 0) for i in range(len(game.current.scene.choices))]


def game_view(room: str, game: Game, player: str, names: dict[str, str]) -> dict[str, Any]:
    """What one player sees of a game: the scene, the open vote and its counts, their own vote and marks, and the
    nicknames of the players (``names``: those who chose one)."""
    shown = game.current
    index = len(game.path) - 1
    mine = [r for r in game.ratings if r.player == player and r.scene == index]
    return {
        "room": room, "genre": game.genre, "premise": game.premise, "status": str(game.status), "ended": game.ended,
        "scene": scene_view(game, index),
        "votes": view_counts(game),
        "deadline": shown.vote_deadline.isoformat() if shown.vote_deadline else None,
        "your_vote": next((v.choice for v in shown.votes if v.player == player), None),
        "your_marks": {"star": any(r.stars for r in mine), "thumb": next((r.thumb for r in mine if r.thumb), None)},
        "starter": game.owner == player, "can_undo": len(game.path) > 1, "players": len(game.players),
        "names": [names[p] for p in game.players if p in names],  # in the order they joined: the starter first
        "nickname": names.get(player),
    }


# How a refusal's hint reads on the web (the engine names no frontend's commands; a web room is its own server).
HINTS = {Hint.START: "start a new adventure at /", Hint.END: "the player who started it can end it",
         Hint.CHANNELS: "every room may hold a game", Hint.MODERATOR: "in a web room, only the starter steers"}


def error(status: int, text: str, hint: str | None = None) -> JSONResponse:
    """``{"error": text}``, with ``"hint"`` (what the player can do) when there is one."""
    return JSONResponse({"error": text} | ({"hint": hint} if hint else {}), status_code=status)


def not_found_page(where: str) -> HTMLResponse:
    """The 404 page; ``where`` (a room, or a path) is escaped: it came from the address bar."""
    page = (STATIC / "missing.html").read_text(encoding="utf-8").replace("{where}", html.escape(where))
    return HTMLResponse(page, status_code=404)


def create_app(tables: Tables, limits: RateLimits | None = None, max_games: int = 50,
               service: Service | None = None, respond_within: float = RESPOND_WITHIN_SECONDS) -> FastAPI:
    """The app over ``tables`` (whose presenter is a ``WebPresenter``): the wiring root builds the engine, the
    store and Tables, and resumes and closes them around the server. ``max_games``: web games running at once,
    the most (each one holds the model for its scenes). ``service``: the running parts ``/health`` and
    ``/metrics`` report on (none: those routes are not served)."""
    presenter = tables.presenter
    if not isinstance(presenter, WebPresenter):
        raise TypeError("the web app needs Tables built with a WebPresenter")
    app = FastAPI(title="cyoa", summary="Play choose-your-own-adventure stories together in the browser.",
                  version="1")
    limits = limits or RateLimits()
    app.add_middleware(Guard, limits=limits)
    if service is not None:
        add_service_routes(app, service)
    starting: dict[str, asyncio.Task[Game]] = {}  # rooms whose opening is being written (or failed, unread)
    rooms_of: dict[str, set[str]] = {}  # by client address: the rooms started from it whose game may still run
    late: set[asyncio.Task[Any]] = set()  # work that outlived its request, kept until it ends

    async def settle(work: Awaitable[T]) -> tuple[bool, T | None]:
        """(True, result) if ``work`` ends within ``respond_within`` (its error is raised); else (False, None)
        and it goes on in the background, where a failure is logged (Tables tells the players)."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=respond_within)
        if task in done:
            return True, task.result()
        late.add(task)
        task.add_done_callback(finished_late)
        return False, None

    def finished_late(task: asyncio.Task[Any]) -> None:
        late.discard(task)
        failure = None if task.cancelled() else task.exception()
        if failure is not None and not isinstance(failure, CyoaError):
            log.error("a request's work failed after its answer", exc_info=failure)

    def started(room: str, task: asyncio.Task[Game]) -> None:
        """A start that answered "writing" ended: a failure is kept for the room's next read and told to the
        pages already watching it."""
        if task.cancelled() or task.exception() is None:
            starting.pop(room, None)
            return
        exc = task.exception()
        reason = str(exc) if isinstance(exc, CyoaError) else "the adventure could not start"
        presenter.publish(place(room), "failed", {"reason": reason})

    def player(request: Request) -> str:
        found: str = request.scope["state"]["player"]  # set by the Guard from the session cookie
        return found

    def place(room: str) -> str:
        return tables.place(room, room)

    def running(room: str) -> bool:
        """The room's game is being started or has not ended."""
        game = tables.game_at(place(room))
        task = starting.get(room)
        return (task is not None and not task.done()) or (game is not None and not game.ended)

    def is_starting(room: str) -> bool:
        """The room's opening is being written, and not yet shown (its game comes in when it is shown)."""
        game = tables.game_at(place(room)) if room in starting else None
        return room in starting and not starting[room].done() and (game is None or not game.path)

    def game_in(room: str) -> Game:
        game = tables.game_at(place(room)) if _ROOM.match(room) else None
        if game is None or not game.path:
            raise NoSuchGame(room)
        return game

    async def view(room: str, request: Request) -> dict[str, Any]:
        game, who = game_in(room), player(request)
        return game_view(room, game, who, await tables.nicknames([who, *game.players]))

    def publish_votes(room: str) -> None:
        """A vote changed the counts: every browser watching redraws them (Tables shows nothing for a vote)."""
        presenter.publish(place(room), "votes", {"votes": view_counts(game_in(room))})

    # --- errors -------------------------------------------------------------------------------------
    @app.exception_handler(CyoaError)
    async def refused(request: Request, exc: CyoaError) -> JSONResponse:
        hint = HINTS.get(exc.hint) if isinstance(exc, GameRuleError) and exc.hint is not None else None
        return error(status_of(exc), str(exc), hint)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404 and not request.url.path.startswith("/api/"):
            return not_found_page(request.url.path)  # a person followed a link: a page, not JSON
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors())
        return error(422, f"the request is not valid: {problems}")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        error_id = secrets.token_hex(4)
        log.exception("request %s %s failed (error id %s)", request.method, request.url.path, error_id,
                      exc_info=exc)
        return error(500, f"something went wrong on the server (error id {error_id})")

    # --- the API ------------------------------------------------------------------------------------
    @app.get("/api/genres")
    async def genres() -> list[dict[str, str]]:
        return [{"id": g.id, "name": g.name, "blurb": g.blurb} for g in GENRES]

    @app.post("/api/games", status_code=201)
    async def start(body: NewGame, request: Request) -> JSONResponse:
        """Start a game in a new room; the caller is its starter (who may retry, undo and end it)."""
        if sum(not g.ended for g in tables.games.values()) + len(starting) >= max_games:
            raise StorytellerBusyError(f"{max_games} games are running here, the most; try again later")
        address = request.client.host if request.client else "unknown"
        if len(rooms_of) > 10_000:  # memory bounded by the addresses with games running, not every one seen
            for gone in [key for key, rooms in rooms_of.items() if not any(running(room) for room in rooms)]:
                del rooms_of[gone]
        mine = rooms_of.setdefault(address, set())
        mine -= {room for room in mine if not running(room)}
        if len(mine) >= limits.games_per_address:
            raise HTTPException(429, f"{len(mine)} adventures started from your address are running, the most; "
                                     "end one or let one finish to start another")
        room = secrets.token_urlsafe(9)
        mine.add(room)
        task = asyncio.ensure_future(tables.start(room, room, player(request), body.genre or None,
                                                  body.premise or None))
        starting[room] = task
        task.add_done_callback(lambda done: started(room, done))
        done, _ = await settle(task)  # a refused genre or premise is refused at once, with its reason
        if done:
            return JSONResponse(await view(room, request), status_code=201)
        return JSONResponse({"room": room, "writing": True}, status_code=202)

    @app.get("/api/games/{room}")
    async def read(room: str, request: Request) -> dict[str, Any]:
        """The game as this player sees it; ``{"room", "writing": true}`` while its opening is being written."""
        if is_starting(room):
            return {"room": room, "writing": True}
        failed = starting.pop(room, None)
        if failed is not None and failed.done() and not failed.cancelled() and failed.exception() is not None:
            raise cast(BaseException, failed.exception())  # told once; the room is then simply not there
        return await view(room, request)

    @app.get("/api/games/{room}/history")
    async def history(room: str) -> list[dict[str, Any]]:
        if is_starting(room):
            return []
        game = game_in(room)
        return [scene_view(game, i) for i in range(len(game.path))]

    @app.post("/api/games/{room}/vote")
    async def vote(room: str, body: VoteBody, request: Request) -> dict[str, Any]:
        game = game_in(room)
        done, taken = await settle(tables.vote(game.place, player(request), body.choice, game.current.message or ""))
        if done and not taken:
            raise GameRuleError("that is not a choice of an open vote")
        publish_votes(room)  # not done: the vote was taken and closed the vote; the next scene is being written
        return await view(room, request)

    @app.delete("/api/games/{room}/vote")
    async def unvote(room: str, request: Request) -> dict[str, Any]:
        game, who = game_in(room), player(request)
        mine = next((v.choice for v in game.current.votes if v.player == who), None)
        # Waiting on a vote that is closing: the answer comes at once, and the withdrawal is moot (it closed).
        done, withdrawn = (await settle(tables.unvote(game.place, who, mine, game.current.message or ""))
                           if mine is not None else (True, False))
        if done and withdrawn:
            publish_votes(room)
        return await view(room, request)

    @app.post("/api/games/{room}/rate")
    async def rate(room: str, body: RateBody, request: Request) -> dict[str, Any]:
        game = game_in(room)
        index = len(game.path) - 1 if body.scene is None else body.scene
        if index >= len(game.path):
            raise HTTPException(404, f"the game has no scene {index}")
        changed = await tables.rate(game.place, player(request), game.path[index].message or "", body.mark, body.on)
        return {"changed": changed, "game": await view(room, request)}

    @app.post("/api/games/{room}/feedback", status_code=201)
    async def feedback(room: str, body: FeedbackBody, request: Request) -> dict[str, str]:
        await tables.feedback(game_in(room).place, player(request), body.text)
        return {"status": "thank you"}

    async def steer(room: str, request: Request, what: Literal["retry", "undo", "end"]) -> dict[str, Any]:
        game, who = game_in(room), player(request)
        try:
            await settle(getattr(tables, what)(game.place, who))  # a retry answers "writing" if it takes long
        except GameRuleError as exc:
            if game.owner != who and not game.ended and not isinstance(exc, CooldownError):
                raise HTTPException(403, str(exc)) from exc  # Tables refused a player who did not start it
            raise
        if what == "end":
            presenter.publish(game.place, "ended", {})  # Tables shows nothing on an end: the page is told here
        return await view(room, request)

    @app.post("/api/games/{room}/retry")
    async def retry(room: str, request: Request) -> dict[str, Any]:
        """The starter only: write the current scene again and open a new vote."""
        return await steer(room, request, "retry")

    @app.post("/api/games/{room}/undo")
    async def undo(room: str, request: Request) -> dict[str, Any]:
        """The starter only: go back to the previous scene."""
        return await steer(room, request, "undo")

    @app.post("/api/games/{room}/end")
    async def end(room: str, request: Request) -> dict[str, Any]:
        """The starter only: end the game now (it is saved, and can still be rated)."""
        return await steer(room, request, "end")

    @app.get("/api/me")
    async def me(request: Request) -> dict[str, Any]:
        """The caller's nickname and whether their votes and ratings are kept out of training."""
        who = player(request)
        names = await tables.nicknames([who])
        return {"nickname": names.get(who), "opted_out": await tables.opted_out(who)}

    @app.post("/api/me")
    async def change_me(body: MeBody, request: Request) -> dict[str, Any]:
        """Set a nickname (blank: none) and/or opt out of training (or back in); what is not sent stays."""
        who = player(request)
        if body.nickname is not None:
            await tables.rename(who, body.nickname)
        if body.opted_out is not None:
            await tables.opt_out(who, body.opted_out)
        return await me(request)

    @app.delete("/api/me")
    async def forget_me(request: Request) -> dict[str, Any]:
        """Delete everything this player did: votes, ratings, comments, nickname, and the games they started
        (which end); they are opted out of training from then on."""
        forgotten = await tables.forget(player(request))
        return {"forgotten": asdict(forgotten)}

    @app.get("/api/games/{room}/events", response_class=StreamingResponse)
    async def events(room: str) -> StreamingResponse:
        """Server-Sent Events: ``scene``, ``votes``, ``draft``, ``extended``, ``failed``, ``notice``, ``ended``."""
        where = place(room) if is_starting(room) else game_in(room).place
        if presenter.watchers(where) >= MAX_WATCHERS:
            raise StorytellerBusyError("too many browsers are watching this game; try again later")
        return StreamingResponse(stream(where), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def stream(where: str) -> AsyncIterator[str]:
        queue = presenter.subscribe(where)
        try:
            yield "retry: 3000\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield event.encode()
        finally:
            presenter.unsubscribe(where, queue)

    # --- pages --------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def home() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/g/{room}", include_in_schema=False, response_model=None)
    async def page(room: str) -> FileResponse | HTMLResponse:
        if not _ROOM.match(room) or (tables.game_at(place(room)) is None and not is_starting(room)):
            return not_found_page(room)
        return FileResponse(STATIC / "game.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name])

    return app


STATIC_FILES = {"app.css": "text/css", "game.js": "text/javascript", "home.js": "text/javascript"}
