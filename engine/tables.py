"""Tables: multi-player games, one per place (a channel of a server), with votes closed by timers.

Every frontend (the Discord bot; the terminal, a one-player room) turns what players do into calls here and
renders what it gets back through a ``Presenter``; the messages here name no frontend's commands (a refusal's
``hint`` is rendered by each frontend its own way). The rules of who may do what, when a vote closes, and
what is saved when, live here, so the frontends stay thin. Every change to a game is saved before anyone is
told about it, and a restart (``resume``) reschedules each open vote from its stored deadline and reconciles
the votes with what the frontend still sees (the reactions on the scene's message).

No fault freezes a game. A model that fails or hangs at a vote close reopens the vote and says so; a scene
that cannot be shown (the frontend answers an error) is shown again later, and a game whose place stays
unreachable is ended, saved; a save that fails (the database locked or full) keeps the game in memory and is
tried again until it lands, and a scene is never shown before it is saved. Ending a game never waits for a
scene being written: the writing is given up. One game's fault never reaches another's (``resume`` takes
each game on its own).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine
from datetime import datetime
from typing import Any

from engine.background import Background
from engine.checks import check_player_text
from engine.cooldowns import Cooldowns
from engine.errors import CyoaError, DeliveryError, GameRuleError, Hint
from engine.game import Game, GameStatus, Rating, now
from engine.places import Place
from engine.ports import Presenter, TableStore
from engine.privacy import Forgotten, forget_in_game, started_by
from engine.servers import ServerSettings
from engine.turns import StoryEngine
from engine.votes import active_players, cast, close_vote, everyone_voted, open_vote, tie_seed, withdraw

log = logging.getLogger(__name__)

Marks = frozenset({"star", "up", "down"})
"""Rating marks a player can put on a scene: a star (5 stars), a thumb up, a thumb down."""

# A scene that could not be shown is tried again after each of these waits, then its game is ended (saved):
# a few minutes covers a Discord outage or a permission being fixed, and a channel that is gone never returns.
DELIVERY_RETRY_SECONDS = (5.0, 30.0, 120.0)
# A save that failed is tried again after each of these, then every last one, for as long as the game lives:
# the game is in memory, and what players did must reach the store.
SAVE_RETRY_SECONDS = (2.0, 5.0, 15.0, 60.0)
FEEDBACK_PER_SCENE = 3  # written comments one player may leave on one scene
FEEDBACK_COOLDOWN = 10.0  # seconds between two comments of one player
# Every comment is a save of the whole game: fresh accounts must not turn one channel into a stream of writes.
FEEDBACK_CHANNEL_COOLDOWN = 2.0  # seconds between two comments in one channel, whoever writes them
FEEDBACK_SCENE_TOTAL = 25  # comments on one scene from everyone together
NICKNAME_LENGTH = 32  # characters of a nickname, the most
NICKNAMES_KEPT = 100_000  # players whose nickname (or its absence) is kept in memory, the most


class Tables:
    def __init__(self, engine: StoryEngine, store: TableStore, presenter: Presenter,
                 clock: Callable[[], datetime] = now, prefix: str = "discord", solo: bool = False,
                 defaults: ServerSettings | None = None) -> None:
        """``solo``: a one-player frontend (the terminal). Its votes wait for the player's ``decide`` (no timer
        closes them), and it has no cooldowns: they share a model fairly among many players, and here there is
        one, who may retry and undo as fast as they like. ``defaults``: the settings of a place that changed
        none (the web's rooms have no settings command: the operator sets their vote window)."""
        self.engine = engine
        self.solo = solo
        self.store = store
        self.presenter = presenter
        self.clock = clock
        self.prefix = prefix
        self.games: dict[str, Game] = {}  # the latest game of each place (an ended one stays, for ratings)
        self._settings: dict[str, ServerSettings] = {}
        # Players' nicknames as the store has them (None: none chosen), read once: every page read names its
        # players. Bounded: the oldest read go first.
        self._nicknames: dict[str, str | None] = {}
        self.defaults = defaults or ServerSettings()
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._background = Background("a background step of a game")
        self._starting: set[str] = set()
        self._closed = False  # after close: no new timer or background step (a closing vote may still finish)
        self._writing: dict[str, asyncio.Task[Any]] = {}  # by game id: a scene being written under its lock
        self._ending: set[str] = set()  # games being ended: their writing was given up, not failed
        self._deliveries: dict[str, int] = {}  # by game id: failed attempts to show its current scene
        self._saving: dict[str, asyncio.Task[None]] = {}  # by game id: a failed save being tried again
        self._showing_later: set[str] = set()  # by game id: a scene to be shown again after a fault
        self._unsaved: dict[str, int] = {}  # by game id: tries at saving a scene before showing it
        self.cooldowns = Cooldowns()
        self.faults = 0  # saves and deliveries that failed (each tried again), for tests and the log
        self.votes_cast = 0  # votes taken (a changed vote counts again), for the service's metrics

    # --- places and settings ------------------------------------------------------------------
    def place(self, server: str, channel: str) -> str:
        """The key of this frontend's game at (server, channel): ``engine.places.Place`` written out."""
        return str(Place(self.prefix, server, channel))

    def server_of(self, place: str) -> str | None:
        """The server of one of this frontend's places; None for another frontend's (or no place)."""
        parsed = Place.parse(place)
        return parsed.server if parsed is not None and parsed.frontend == self.prefix else None

    async def settings(self, server: str) -> ServerSettings:
        cached = self._settings.get(server)
        if cached is None:
            cached = ServerSettings.from_stored(await self.store.server_settings(server), self.defaults)
            self._settings[server] = cached
        return cached

    async def configure(self, server: str, **values: Any) -> ServerSettings:
        """Change a server's settings (validated); the next vote and the next game use them."""
        changed = (await self.settings(server)).changed(**values)
        await self.store.save_server_settings(server, changed.overrides())
        self._settings[server] = changed
        for game in self.running_in(server):
            game.block_words = list(changed.block_words)  # running games too, from their next scene on
        return changed

    async def reset(self, server: str) -> ServerSettings:
        await self.store.save_server_settings(server, {})
        self._settings[server] = self.defaults
        return self._settings[server]

    async def _settings_of(self, game: Game) -> ServerSettings:
        server = self.server_of(game.place)
        return await self.settings(server) if server is not None else self.defaults

    # --- lookups ------------------------------------------------------------------------------
    def game_at(self, place: str) -> Game | None:
        return self.games.get(place)

    def running(self, place: str) -> Game:
        game = self.games.get(place)
        if game is None or game.ended:
            raise GameRuleError("no adventure is running here", Hint.START)
        return game

    def running_in(self, server: str) -> list[Game]:
        return [g for p, g in self.games.items() if not g.ended and self.server_of(p) == server]

    def _lock(self, game: Game) -> asyncio.Lock:
        return self._locks.setdefault(game.id, asyncio.Lock())

    @staticmethod
    def scene_of(game: Game, message: str) -> int | None:
        """The index of the scene shown in ``message``, if it is one of the game's."""
        return next((i for i, shown in enumerate(game.path) if shown.message == message), None)

    # --- starting and steering ----------------------------------------------------------------
    async def check_start(self, server: str, channel: str, genre: str | None = None,
                          premise: str | None = None, player: str | None = None) -> None:
        """Refuse a start that cannot succeed, before anything is written (a frontend checks this first, so
        the refusal reaches only the player who asked)."""
        settings = await self.settings(server)
        if player is not None:
            self._check_cooldown("start", player, settings.start_cooldown, "you can start an adventure")
        self.engine.check_opening(genre, premise, settings.block_words)
        if settings.allowed_channels and channel not in settings.allowed_channels:
            raise GameRuleError("adventures are not played here", Hint.CHANNELS)
        place = self.place(server, channel)
        current = self.games.get(place)
        if (current is not None and not current.ended) or place in self._starting:
            raise GameRuleError("an adventure is already running here", Hint.END)
        starting = sum(1 for p in self._starting if self.server_of(p) == server)
        if len(self.running_in(server)) + starting >= settings.max_games:
            raise GameRuleError(f"this server already has {settings.max_games} adventures running, its most; "
                                "end one first")

    async def start(self, server: str, channel: str, player: str, genre: str | None = None,
                    premise: str | None = None) -> Game:
        await self.check_start(server, channel, genre, premise, player)
        settings = await self.settings(server)
        place = self.place(server, channel)
        self.cooldowns.mark("start", player, self.clock())  # a failed start counts: it cost the model as much
        self._starting.add(place)  # held while the opening is written, so two starts cannot race
        try:
            game = await self.engine.start(place, genre, premise, players=[player], owner=player,
                                           block_words=settings.block_words, progress=self._draft(place))
        except BaseException:
            self.presenter.draft(place, None)
            raise
        finally:
            self._starting.discard(place)
        self.games[place] = game
        async with self._lock(game):
            await self._present(game)
        return game

    @staticmethod
    def _at_written_ending(game: Game) -> bool:
        return game.ended and bool(game.path) and game.current.scene.is_ending

    def _check_cooldown(self, kind: str, key: str, seconds: float, what: str) -> None:
        if not self.solo:
            self.cooldowns.check(kind, key, seconds, self.clock(), what)

    async def check_steer(self, place: str, player: str, manager: bool, what: str) -> Game:
        """``steerable``, and the channel's cooldown on retries and undos (a frontend checks this first)."""
        game = self.steerable(place, player, manager, what)
        settings = await self._settings_of(game)
        self._check_cooldown("steer", game.id, settings.steer_cooldown, f"this adventure can {what}")
        return game

    def steerable(self, place: str, player: str, manager: bool, what: str) -> Game:
        """The running game of ``place``, if ``player`` may ``what`` (end, retry, undo) it. A story that reached
        its written ending may still be retried or undone (another ending, or back to the choice before it);
        one that the players ended may not."""
        game = self.games.get(place)
        if game is None or (game.ended and not (what != "end" and self._at_written_ending(game))):
            raise GameRuleError("no adventure is running here", Hint.START)
        if player != game.owner and not manager:
            raise GameRuleError(f"only the player who started this adventure, or a moderator, may {what} it",
                                Hint.MODERATOR)
        if what == "undo" and len(game.path) < 2:
            raise GameRuleError("there is no earlier scene to go back to")
        return game

    async def retry(self, place: str, player: str, manager: bool = False) -> Game:
        """Write the current scene again and put it to a new vote."""
        return await self._steer(place, player, manager, "retry",
                                 lambda game: self.engine.retry(game, self._draft(game.place)))

    async def undo(self, place: str, player: str, manager: bool = False) -> Game:
        """Go back to the previous scene and open its vote again."""
        return await self._steer(place, player, manager, "undo", self.engine.undo)

    async def _steer(self, place: str, player: str, manager: bool, what: str,
                     step: Callable[[Game], Awaitable[Game]]) -> Game:
        game = await self.check_steer(place, player, manager, what)
        self.cooldowns.mark("steer", game.id, self.clock())
        async with self._lock(game):
            if game.ended and not self._at_written_ending(game):
                raise GameRuleError("this adventure has ended")
            self._cancel_timer(game)
            try:
                await self._write(game, step(game))
            except BaseException:
                self.presenter.draft(place, None)
                self._schedule(game)  # the scene and its vote stay as they were
                raise
            await self._present(game)
        return game

    async def _write(self, game: Game, step: Awaitable[Game]) -> Game:
        """Run a step that writes a scene (lock held) so that ``end`` can give it up without waiting for it;
        given up, it raises ``GameRuleError``."""
        task = asyncio.ensure_future(step)
        self._writing[game.id] = task
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and game.id in self._ending and not (current and current.cancelling()):
                raise GameRuleError("the adventure was ended while the scene was being written") from None
            raise
        finally:
            if self._writing.get(game.id) is task:
                del self._writing[game.id]

    async def end(self, place: str, player: str, manager: bool = False) -> Game:
        """End the game now: a scene being written for it is given up (its lock is not waited for)."""
        game = self.steerable(place, player, manager, "end")
        self._ending.add(game.id)
        try:
            self._cancel_timer(game)
            writing = self._writing.get(game.id)
            if writing is not None:
                writing.cancel()
            async with self._lock(game):
                self._cancel_timer(game)
                await self.engine.end(game)
                self.presenter.draft(game.place, None)
                await self._save(game)
        finally:
            self._ending.discard(game.id)
        return game

    # --- votes --------------------------------------------------------------------------------
    async def vote(self, place: str, player: str, choice: int, message: str) -> bool:
        """A player's vote from a reaction on ``message``; False if it is not a vote on the open scene."""
        game = self.games.get(place)
        if game is None or game.ended:
            return False
        async with self._lock(game):
            shown = game.current
            if (shown.message != message or shown.vote_deadline is None
                    or not 0 <= choice < len(shown.scene.choices) or game.status != GameStatus.WAITING):
                return False
            cast(game, player, choice, self.clock())
            self.votes_cast += 1
            if player not in game.players:
                game.players.append(player)
            settings = await self._settings_of(game)
            if everyone_voted(game, active_players(game)) and len(shown.votes) >= settings.quorum:
                self._cancel_timer(game)
                await self._close(game)
            else:
                await self._save(game)
        return True

    async def decide(self, place: str, player: str, choice: int) -> Game:
        """The player's choice, taken now: their vote is cast and the vote closed at once. Only where the game
        has that one player, whose vote is then everyone's (a one-player room: the terminal); in a game with
        others the vote closes when they have all voted, or at its deadline."""
        game = self.running(place)
        async with self._lock(game):
            if game.players != [player]:
                raise GameRuleError("this adventure has other players: the vote closes when they have voted")
            if game.status != GameStatus.WAITING or game.current.vote_deadline is None:
                raise GameRuleError("the next scene is still being written")
            cast(game, player, choice, self.clock())
            self.votes_cast += 1
            self._cancel_timer(game)
            await self._close(game)
        return game

    async def unvote(self, place: str, player: str, choice: int, message: str) -> bool:
        """A reaction was removed: the player's vote is withdrawn if it was that choice."""
        game = self.games.get(place)
        if game is None or game.ended:
            return False
        async with self._lock(game):
            shown = game.current
            if shown.message != message or shown.vote_deadline is None:
                return False
            before = len(shown.votes)
            withdraw(game, player, choice)
            if len(shown.votes) == before:
                return False
            await self._save(game)
        return True

    async def _close(self, game: Game) -> None:
        """Close the current vote (lock held): extend it once below the quorum, else take the winner."""
        settings = await self._settings_of(game)
        result = close_vote(game, settings.vote_rules, self.clock(), tie_seed(game))
        if not result.closed or result.choice is None:
            await self._save(game)
            self._schedule(game)
            await self._tell(self.presenter.vote_extended(game))
            return
        try:
            await self._write(game, self.engine.choose(game, result.choice, self._draft(game.place)))
        except Exception as exc:
            self.presenter.draft(game.place, None)
            if game.id in self._ending:
                return  # the players ended the game meanwhile; ``end`` saves it
            if isinstance(exc, CyoaError):
                reason = str(exc)
            else:  # a bug or a crash in the model: logged in full, the players get a plain reason
                log.exception("writing the next scene of game %s failed", game.id)
                reason = "the storyteller failed"
            # Nothing was taken: the vote opens again, with its votes.
            votes = list(game.current.votes)
            open_vote(game, settings.vote_rules, self.clock())
            game.current.votes = votes
            await self._save(game)
            self._schedule(game)
            await self._tell(self.presenter.failed(game, reason))
            return
        await self._present(game)

    def _draft(self, place: str) -> Callable[[str], None]:
        """The cold path's progress callback: the presenter shows the scene being written in ``place``."""
        return lambda text: self.presenter.draft(place, text)

    async def _close_at(self, game: Game, deadline: datetime) -> None:
        delay = (deadline - self.clock()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        async with self._lock(game):
            if self._timers.get(game.id) is asyncio.current_task():
                del self._timers[game.id]
            if game.ended or game.current.vote_deadline != deadline:
                return  # closed, reopened or extended since this timer was set
            await self._close(game)

    def _schedule(self, game: Game) -> None:
        self._cancel_timer(game)
        if self._closed or self.solo:
            return  # a solo vote waits for its player's ``decide``
        deadline = game.current.vote_deadline if game.path and not game.ended else None
        if deadline is not None:
            self._timers[game.id] = self._spawn(self._close_at(game, deadline))

    def frozen(self) -> list[str]:
        """The running games nothing will move on: no vote timer, no scene being written and no scene waiting
        to be shown again. Empty unless there is a bug; the fault-injection suite checks it after each fault."""
        return [game.id for game in self.games.values()
                if not game.ended and not self.solo  # a solo game waits for its player, not for a timer
                and game.id not in self._showing_later and game.id not in self._writing
                and not (game.id in self._timers and not self._timers[game.id].done())]

    def _cancel_timer(self, game: Game) -> None:
        timer = self._timers.pop(game.id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    # --- ratings and feedback -----------------------------------------------------------------
    async def rate(self, place: str, player: str, message: str, mark: str, on: bool = True,
                   stars: int = 5) -> bool:
        """A rating on one of the game's scene messages: ``star`` is ``stars`` stars (a reaction's ⭐ is 5; the
        terminal gives 1 to 5), ``up``/``down`` a thumb. A player has one star rating and one thumb per scene
        (the latest counts); ``on=False`` takes one back."""
        if mark not in Marks:
            raise GameRuleError(f"unknown rating {mark!r}")
        if not 1 <= stars <= 5:
            raise GameRuleError("a rating is 1 to 5 stars")
        game = self.games.get(place)
        scene = self.scene_of(game, message) if game is not None else None
        if game is None or scene is None:
            return False
        # No game lock, as for feedback: a rating changes nothing a vote close reads, the change below has no
        # await in it (one step of the event loop), and a player must not wait for a scene being written
        # (the web's load bench measured 10-15 s for a rating that waited on the lock).
        kept = []
        for rating in game.ratings:
            same = rating.player == player and rating.scene == scene
            if same and mark == "star" and rating.stars is not None:
                continue
            if same and mark != "star" and rating.thumb is not None and (on or rating.thumb == mark):
                continue
            kept.append(rating)
        if on:
            version = game.path[scene].scene.model_version
            kept.append(Rating(player=player, scene=scene, model_version=version, at=self.clock(),
                               stars=stars if mark == "star" else None, thumb=None if mark == "star" else mark))
        elif len(kept) == len(game.ratings):
            return False
        game.ratings = kept
        await self._save(game)
        return True

    async def feedback(self, place: str, player: str, text: str) -> Game:
        """A player's written feedback on the current (or last) scene of the channel's game."""
        game = self.games.get(place)
        if game is None or not game.path:
            raise GameRuleError("there is no scene here to give feedback on")
        comment = check_player_text(text, self.engine.checks_for(game))
        if not comment:
            raise GameRuleError("the feedback is empty")
        scene = len(game.path) - 1
        comments = [r for r in game.ratings if r.scene == scene and r.comment]
        if sum(1 for r in comments if r.player == player) >= FEEDBACK_PER_SCENE:
            raise GameRuleError(f"you have left {FEEDBACK_PER_SCENE} comments on this scene already, the most")
        if len(comments) >= FEEDBACK_SCENE_TOTAL:
            raise GameRuleError(f"this scene has {FEEDBACK_SCENE_TOTAL} comments already, the most it takes")
        at = self.clock()
        self._check_cooldown("feedback", player, FEEDBACK_COOLDOWN, "you can leave feedback")
        self._check_cooldown("feedback-place", place, FEEDBACK_CHANNEL_COOLDOWN, "this adventure takes feedback")
        self.cooldowns.mark("feedback", player, at)
        self.cooldowns.mark("feedback-place", place, at)
        # No game lock: a comment changes nothing a vote close reads, and the player must not wait for a
        # scene being written. The store writes one save at a time, each of the game as it is then.
        game.ratings.append(Rating(player=player, scene=scene, comment=comment[:1000], at=self.clock(),
                                   model_version=game.current.scene.model_version))
        await self._save(game)
        return game

    async def opt_out(self, player: str, opted_out: bool = True) -> None:
        await self.store.set_opt_out(player, opted_out)

    async def opted_out(self, player: str) -> bool:
        return player in await self.store.opted_out()

    async def rename(self, player: str, nickname: str | None) -> str | None:
        """The name a player shows the others as (``None`` or blank: none), as it is kept: spaces folded, at
        most ``NICKNAME_LENGTH`` characters, and refused like any player's text with a blocked word."""
        text = " ".join(check_player_text(nickname or "", self.engine.rules.checks).split())
        if len(text) > NICKNAME_LENGTH:
            raise GameRuleError(f"a nickname takes at most {NICKNAME_LENGTH} characters, not {len(text)}")
        await self.store.set_nickname(player, text or None)
        self._remember({player: text or None})
        return text or None

    async def nicknames(self, players: Collection[str]) -> dict[str, str]:
        """The nicknames of those of ``players`` who chose one."""
        unknown = [player for player in players if player not in self._nicknames]
        if unknown:
            found = await self.store.nicknames(unknown)
            self._remember({player: found.get(player) for player in unknown})
        return {player: name for player in players if (name := self._nicknames.get(player)) is not None}

    def _remember(self, names: dict[str, str | None]) -> None:
        for player, name in names.items():
            self._nicknames.pop(player, None)
            self._nicknames[player] = name
        while len(self._nicknames) > NICKNAMES_KEPT:
            self._nicknames.pop(next(iter(self._nicknames)))

    async def forget(self, player: str) -> Forgotten:
        """Delete the player's data (``TableStore.forget_player``), from the games in memory first, or their
        next save would write it back: their votes, ratings and comments go, and a game they started is ended
        and dropped (``engine.privacy`` says why)."""
        for place, game in list(self.games.items()):
            if started_by(game, player):
                if not game.ended:
                    await self.end(place, player)
                if self.games.get(place) is game:
                    del self.games[place]
                continue
            async with self._lock(game):
                forget_in_game(game, player)
        forgotten = await self.store.forget_player(player)
        self._nicknames.pop(player, None)  # after: a read meanwhile may have brought the old name back
        return forgotten

    # --- showing, saving, restarting ----------------------------------------------------------
    async def _present(self, game: Game) -> None:
        """Open the vote on the current scene, save, show it, save where it is shown, and write its branches.
        If the save or the showing fails, the game waits and the whole step is tried again later."""
        if not game.ended:
            open_vote(game, (await self._settings_of(game)).vote_rules, self.clock())
        game.current.shown_at = self.clock()  # the tables' clock, as the votes and ratings on it have
        game.current.message = None
        if not await self._save(game):  # saved before it is shown: a crash now re-shows it on resume
            waits = self._unsaved[game.id] = self._unsaved.get(game.id, 0) + 1
            if waits == 1:  # said once, not at every try
                await self._tell(self.presenter.notice(game, "The story could not be saved just now; the next "
                                                             "scene is shown as soon as it is."))
            self._present_later(game, self._delay(SAVE_RETRY_SECONDS, waits - 1))
            return
        self._unsaved.pop(game.id, None)
        try:
            game.current.message = await self.presenter.show(game)
        except Exception as exc:
            await self._undelivered(game, exc)
            return
        self._deliveries.pop(game.id, None)
        await self._save(game)  # if this one fails the save is retried; the game goes on meanwhile
        if not game.ended and not self._closed:
            self._schedule(game)
            self._spawn(self._pregenerate(game))

    async def _undelivered(self, game: Game, exc: Exception) -> None:
        """The current scene could not be shown: try again later, or end a game whose place stays unreachable."""
        self.faults += 1
        failures = self._deliveries[game.id] = self._deliveries.get(game.id, 0) + 1
        permanent = isinstance(exc, DeliveryError) and exc.permanent
        if not isinstance(exc, CyoaError):
            log.error("showing a scene of game %s failed", game.id, exc_info=exc)
        if failures > len(DELIVERY_RETRY_SECONDS) or (permanent and failures > 1):
            log.warning("game %s ended: its scene could not be shown %d times (%s)", game.id, failures, exc)
            self._deliveries.pop(game.id, None)
            await self.engine.end(game)
            await self._save(game)
            return
        log.warning("game %s: its scene could not be shown (%s); trying again", game.id, exc)
        self._present_later(game, DELIVERY_RETRY_SECONDS[failures - 1])

    def _present_later(self, game: Game, delay: float) -> None:
        if self._closed:
            return  # a restart resumes it: its scene has no message, so it is shown then

        async def again() -> None:
            try:
                await asyncio.sleep(delay)
                async with self._lock(game):
                    self._showing_later.discard(game.id)
                    if self.games.get(game.place) is game and game.current.message is None and (
                            not game.ended or game.id in self._deliveries):
                        await self._present(game)
            finally:
                self._showing_later.discard(game.id)

        self._showing_later.add(game.id)
        self._spawn(again())

    @staticmethod
    def _delay(delays: tuple[float, ...], attempt: int) -> float:
        return delays[min(attempt, len(delays) - 1)]

    async def _tell(self, notice: Awaitable[None]) -> None:
        """A notice to the players is best effort: one that cannot be posted is logged, and the game goes on."""
        try:
            await notice
        except Exception as exc:
            log.warning("a notice could not be shown: %s", exc)

    async def _pregenerate(self, game: Game) -> None:
        task = self.engine.start_pregeneration(game, on_branch=lambda _: self._save_branch(game))
        await asyncio.wait([task])

    async def _save_branch(self, game: Game) -> None:
        """A branch was written: save it at once (it is preference data, and a restart then need not write it
        again). No game lock: the choice being taken may be waiting for this very branch."""
        if self.games.get(game.place) is game and not game.ended:
            await self._save(game)

    async def _save(self, game: Game) -> bool:
        """Save the game; if the store fails, it is tried again in the background until it lands (the game
        goes on in memory meanwhile). True when saved now."""
        try:
            await self.store.save(game)
            counts = self.engine.stats.drain()
            if counts:
                await self.store.add_output_counts(counts)
        except Exception as exc:
            self.faults += 1
            if isinstance(exc, CyoaError):
                log.warning("game %s could not be saved, trying again: %s", game.id, exc)
            else:
                log.error("game %s could not be saved, trying again", game.id, exc_info=exc)
            self._save_later(game)
            return False
        return True

    def _save_later(self, game: Game) -> None:
        running = self._saving.get(game.id)
        if running is not None and not running.done():
            return

        async def again() -> None:
            attempt = 0
            while True:
                await asyncio.sleep(self._delay(SAVE_RETRY_SECONDS, attempt))
                attempt += 1
                try:
                    await self.store.save(game)
                except Exception as exc:
                    log.warning("game %s still cannot be saved (attempt %d): %s", game.id, attempt, exc)
                    continue
                log.info("game %s saved after %d attempt(s)", game.id, attempt)
                return

        self._saving[game.id] = self._spawn(again())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self._background.spawn(work)

    async def take(self, game: Game) -> Game:
        """Take in one saved game and show its current scene again, with its vote open: for a frontend that
        resumes the game its player picks (the terminal), not every game at a restart (``resume``)."""
        current = self.games.get(game.place)
        if current is not None and current is not game and not current.ended:
            raise GameRuleError("an adventure is already running here", Hint.END)
        self.games[game.place] = game
        async with self._lock(game):
            if not game.ended:
                game.status = GameStatus.WAITING  # a scene being written when it stopped is written again
            game.current.message = None  # whatever showed it before is gone
            await self._present(game)
        return game

    def leave(self, place: str) -> None:
        """Let go of the game of ``place`` (it is saved): a frontend that shows one game at a time leaves it
        for another, and it no longer counts among the games running; ``take`` brings it back."""
        game = self.games.pop(place, None)
        if game is not None:
            self._cancel_timer(game)

    async def resume(self) -> list[Game]:
        """After a restart: take back every unfinished game of this frontend, show what was never shown,
        reconcile open votes with what the players still show, and reschedule each vote from its deadline."""
        resumed = []
        for game in await self.store.unfinished():
            if self.server_of(game.place) is None or not game.path or game.place in self.games:
                continue  # not ours, or already live (a command came in before the resume)
            self.games[game.place] = game
            try:
                async with self._lock(game):
                    await self._resume(game)
            except Exception:  # one game's fault must not keep the games after it from their timers
                log.exception("game %s could not be resumed; its scene is shown again later", game.id)
                game.current.message = None
                self._present_later(game, DELIVERY_RETRY_SECONDS[0])
            resumed.append(game)
        return resumed

    async def _resume(self, game: Game) -> None:
        game.status = GameStatus.WAITING  # a scene being written when it stopped is written again
        shown = game.current
        if shown.message is None or shown.vote_deadline is None:
            await self._present(game)
            return
        reactions = await self.presenter.read_votes(game)
        if reactions is not None:
            self._reconcile(game, reactions)
            await self._save(game)
        self._schedule(game)
        if not self._closed:
            self._spawn(self._pregenerate(game))

    def _reconcile(self, game: Game, reactions: dict[str, set[int]]) -> None:
        """Stored votes whose reaction is gone are withdrawn; reactions without a stored vote are cast
        (a player with several counts with their lowest-numbered one)."""
        shown = game.current
        for vote in list(shown.votes):
            if vote.choice not in reactions.get(vote.player, set()):
                withdraw(game, vote.player)
        standing = {vote.player for vote in shown.votes}
        for player, choices in sorted(reactions.items()):
            valid = sorted(c for c in choices if 0 <= c < len(shown.scene.choices))
            if player not in standing and valid:
                cast(game, player, valid[0], self.clock())
                if player not in game.players:
                    game.players.append(player)

    async def close(self) -> None:
        """Stop every timer and background step (the games are saved; a restart resumes them)."""
        self._closed = True
        await self._background.close()
        self._timers.clear()
        await self.engine.close()
