"""A small fake Discord on 127.0.0.1 for end-to-end tests with the real discord.py client.

It serves the REST API under ``/api/v10`` and a JSON gateway at ``/gateway`` for one server (guild) with one
text channel, the bot and one player. Every REST request is recorded (method, path, query, JSON body); the
routes the bot's flows use answer as Discord does, and any other route is refused with a 404 and recorded in
``unknown``, so a test fails on it instead of passing over a silent 200. The gateway sends HELLO, acks
heartbeats, answers IDENTIFY with READY and GUILD_CREATE, compresses with zlib-stream when asked to, and
only dispatches events the client subscribed to by its intents, as Discord does. Like Discord, it echoes a
MESSAGE_REACTION_ADD for the bot's own reactions.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import discord
from aiohttp import WSMsgType, web

Json = dict[str, Any]

API = "/api/v10"
BOT_ID = 1_100_000_000_000_000_001
APP_ID = BOT_ID  # a bot's application id is its user id
GUILD_ID = 1_100_000_000_000_000_100
CHANNEL_ID = 1_100_000_000_000_000_200
PLAYER_ID = 1_100_000_000_000_000_300
HEARTBEAT_MS = 41_250
TOKEN_IN_PATH = ("/interactions/", "/webhooks/")

# What @everyone may do in the test server: enough for the bot to post scenes and react, and for players to vote.
EVERYONE = discord.Permissions(view_channel=True, send_messages=True, embed_links=True, add_reactions=True,
                               read_message_history=True, use_application_commands=True)

# The intent each event needs (no entry: always sent), as Discord filters what it dispatches.
EVENT_INTENTS = {
    "GUILD_CREATE": discord.Intents(guilds=True).value,
    "MESSAGE_REACTION_ADD": discord.Intents(guild_reactions=True).value,
    "MESSAGE_REACTION_REMOVE": discord.Intents(guild_reactions=True).value,
}


@dataclass(eq=False)
class Recorded:
    """One REST request as the fake server received it (``path`` is relative to ``/api/v10``, decoded), and
    the JSON it answered (None: no body)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None
    status: int = 0
    response: Any = None


@dataclass
class _Gateway:
    """One gateway connection; sends are serialised so zlib-stream frames go out in compression order."""

    ws: web.WebSocketResponse
    compressor: Any | None  # zlib.compressobj when the client asked for zlib-stream
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    intents: int | None = None  # set by IDENTIFY

    async def send(self, payload: Json) -> None:
        raw = json.dumps(payload)
        async with self.lock:
            if self.compressor is None:
                await self.ws.send_str(raw)
            else:
                # One message per frame, ending in a sync flush (00 00 ff ff): what discord.py waits for.
                frame = self.compressor.compress(raw.encode()) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(frame)


Route = tuple[str, re.Pattern[str], Callable[[re.Match[str], Any], Awaitable[web.Response]]]


class FakeDiscord:
    """``async with FakeDiscord() as server``: serving on a free port of 127.0.0.1 until the block ends."""

    def __init__(self, token: str = "fake-token") -> None:
        self.token = token
        self.requests: list[Recorded] = []
        self.unknown: list[str] = []  # "METHOD path" of every route the fake does not serve
        self.problems: list[str] = []  # anything else a real Discord would have refused
        self.dispatched: list[tuple[str, Json]] = []
        self.gateway_queries: list[dict[str, str]] = []
        self.identify: Json | None = None
        self.commands: list[Json] = []  # the slash commands as last synced, with their ids
        self.messages: dict[int, Json] = {}
        self._ids = itertools.count(1_200_000_000_000_000_000)
        self._seq = 0
        self._gateway: _Gateway | None = None
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._routes: list[Route] = [
            ("GET", re.compile(r"/users/@me"), self._me),
            ("GET", re.compile(r"/oauth2/applications/@me"), self._application),
            ("GET", re.compile(r"/gateway/bot"), self._gateway_bot),
            ("GET", re.compile(r"/gateway"), self._gateway_bot),
            ("PUT", re.compile(rf"/applications/{APP_ID}/commands"), self._sync_commands),
            ("POST", re.compile(r"/interactions/(?P<id>\d+)/(?P<token>[^/]+)/callback"), self._callback),
            ("POST", re.compile(rf"/webhooks/{APP_ID}/(?P<token>[^/]+)"), self._followup),
            ("PATCH", re.compile(rf"/webhooks/{APP_ID}/(?P<token>[^/]+)/messages/@original"), self._edit_original),
            ("POST", re.compile(rf"/channels/(?P<channel>{CHANNEL_ID})/messages"), self._create_message),
            ("PATCH", re.compile(rf"/channels/(?P<channel>{CHANNEL_ID})/messages/(?P<message>\d+)"),
             self._edit_message),
            ("PUT", re.compile(rf"/channels/(?P<channel>{CHANNEL_ID})/messages/(?P<message>\d+)/reactions/"
                               r"(?P<emoji>[^/]+)/@me"), self._add_own_reaction),
        ]

    # --- serving ------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway_handler)
        app.router.add_route("*", API + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        if self._gateway is not None and not self._gateway.ws.closed:
            await self._gateway.ws.close(code=1001)  # a test that failed early left the client connected
        if self._runner is not None:
            await self._runner.cleanup()

    # --- what a test reads and waits for ------------------------------------------------------
    def find(self, method: str, pattern: str) -> list[Recorded]:
        """The answered requests of ``method`` whose whole path matches the regular expression ``pattern``."""
        return [r for r in self.requests if r.status and r.method == method and re.fullmatch(pattern, r.path)]

    def summary(self) -> str:
        return "; ".join(f"{r.method} {r.path}" for r in self.requests) or "no request"

    async def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        """Wait until ``ready()`` holds; it is checked after every request and every dispatch."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(ready)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; requests: {self.summary()}; "
                                 f"unknown routes: {self.unknown}; problems: {self.problems}") from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- the gateway ----------------------------------------------------------------------------
    async def dispatch(self, event: str, data: Json) -> bool:
        """Send a DISPATCH to the connected client; False if its intents do not cover the event (not sent)."""
        gateway = self._gateway
        if gateway is None or gateway.intents is None or gateway.ws.closed:
            self.problems.append(f"{event} dispatched with no identified client connected")
            return False
        needed = EVENT_INTENTS.get(event, 0)
        if needed and not gateway.intents & needed:
            return False
        self._seq += 1
        await gateway.send({"op": 0, "t": event, "s": self._seq, "d": data})
        self.dispatched.append((event, data))
        await self._notify()
        return True

    async def _gateway_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.gateway_queries.append(dict(request.query))
        compress = request.query.get("compress")
        if compress not in (None, "zlib-stream"):
            # zstd-stream needs a package the tests do not have; discord.py also reads uncompressed text frames.
            compress = None
        gateway = _Gateway(ws, zlib.compressobj() if compress else None)
        self._gateway = gateway
        await gateway.send({"op": 10, "s": None, "t": None, "d": {"heartbeat_interval": HEARTBEAT_MS}})
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await self._on_gateway_message(gateway, json.loads(message.data))
            else:
                self.problems.append(f"gateway frame of type {message.type!r} from the client")
        return ws

    async def _on_gateway_message(self, gateway: _Gateway, payload: Json) -> None:
        op = payload.get("op")
        if op == 1:
            await gateway.send({"op": 11, "s": None, "t": None, "d": None})
        elif op == 2:
            await self._identified(gateway, payload["d"])
        else:
            self.problems.append(f"gateway op {op} from the client: {payload}")

    async def _identified(self, gateway: _Gateway, data: Json) -> None:
        self.identify = data
        if data.get("token") != self.token:
            self.problems.append("IDENTIFY with a wrong token")
            await gateway.ws.close(code=4004)  # Discord's "authentication failed"
            return
        gateway.intents = int(data["intents"])
        await self.dispatch("READY", {
            "v": 10, "user": self.bot_user(), "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
            "session_id": "fake-session", "resume_gateway_url": self.gateway_url,
            "application": {"id": str(APP_ID), "flags": 0}, "private_channels": [], "relationships": [],
            "presences": [], "guild_join_requests": [], "geo_ordered_rtc_regions": ["local"], "_trace": ["fake"],
        })
        await self.dispatch("GUILD_CREATE", self.guild())

    # --- payloads -------------------------------------------------------------------------------
    @staticmethod
    def bot_user() -> Json:
        return {"id": str(BOT_ID), "username": "cyoa", "discriminator": "0", "global_name": None, "avatar": None,
                "bot": True, "flags": 0, "public_flags": 0, "verified": True, "mfa_enabled": False}

    @staticmethod
    def player_user() -> Json:
        return {"id": str(PLAYER_ID), "username": "ana", "discriminator": "0", "global_name": "Ana", "avatar": None,
                "flags": 0, "public_flags": 0}

    @staticmethod
    def member(user: Json) -> Json:
        return {"user": user, "roles": [], "joined_at": _now(), "deaf": False, "mute": False, "flags": 0,
                "pending": False, "nick": None, "avatar": None, "premium_since": None,
                "communication_disabled_until": None}

    @staticmethod
    def channel() -> Json:
        return {"id": str(CHANNEL_ID), "type": 0, "guild_id": str(GUILD_ID), "name": "adventures", "position": 0,
                "permission_overwrites": [], "parent_id": None, "topic": None, "nsfw": False,
                "rate_limit_per_user": 0, "last_message_id": None, "flags": 0}

    def guild(self) -> Json:
        everyone = {"id": str(GUILD_ID), "name": "@everyone", "permissions": str(EVERYONE.value), "position": 0,
                    "color": 0, "colors": {"primary_color": 0}, "hoist": False, "managed": False,
                    "mentionable": False, "flags": 0}
        return {"id": str(GUILD_ID), "name": "Test server", "icon": None, "owner_id": str(PLAYER_ID),
                "unavailable": False, "large": False, "member_count": 2, "joined_at": _now(),
                "roles": [everyone], "channels": [self.channel()],
                "members": [self.member(self.bot_user()), self.member(self.player_user())],
                "emojis": [], "stickers": [], "features": [], "voice_states": [], "presences": [], "threads": [],
                "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
                "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
                "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0, "system_channel_id": None,
                "system_channel_flags": 0, "preferred_locale": "en-US", "afk_timeout": 300, "afk_channel_id": None}

    def slash_command(self, name: str, subcommand: str, options: dict[str, str], user_id: int = PLAYER_ID) -> Json:
        """An INTERACTION_CREATE payload for ``/name subcommand`` with string options, by the player."""
        command = next((c for c in self.commands if c["name"] == name), None)
        if command is None:
            raise AssertionError(f"/{name} was never synced; synced: {[c['name'] for c in self.commands]}")
        interaction_id = next(self._ids)
        user = self.player_user() if user_id == PLAYER_ID else self.bot_user()
        return {
            "id": str(interaction_id), "application_id": str(APP_ID), "type": 2, "version": 1,
            "token": f"interaction-token-{interaction_id}", "guild_id": str(GUILD_ID),
            "channel_id": str(CHANNEL_ID), "channel": {**self.channel(), "permissions": str(EVERYONE.value)},
            "guild": {"id": str(GUILD_ID), "locale": "en-US", "features": []}, "guild_locale": "en-US",
            "locale": "en-GB", "member": {**self.member(user), "permissions": str(EVERYONE.value)},
            "app_permissions": str(EVERYONE.value), "entitlements": [], "attachment_size_limit": 10_485_760,
            "authorizing_integration_owners": {"0": str(GUILD_ID)}, "context": 0,
            "data": {"id": command["id"], "name": name, "type": 1, "options": [{
                "type": 1, "name": subcommand,
                "options": [{"name": key, "type": 3, "value": value} for key, value in options.items()]}]},
        }

    def reaction_add(self, user_id: int, message_id: int, emoji: str) -> Json:
        """A MESSAGE_REACTION_ADD payload: ``user_id`` reacted with the unicode ``emoji`` in the channel."""
        user = self.bot_user() if user_id == BOT_ID else self.player_user()
        return {"user_id": str(user_id), "channel_id": str(CHANNEL_ID), "message_id": str(message_id),
                "guild_id": str(GUILD_ID), "member": self.member(user), "emoji": {"id": None, "name": emoji},
                "message_author_id": str(BOT_ID), "burst": False, "burst_colors": [], "type": 0}

    def _message(self, channel_id: int, body: Json, webhook: bool = False) -> Json:
        message_id = next(self._ids)
        message: Json = {
            "id": str(message_id), "channel_id": str(channel_id), "author": self.bot_user(),
            "content": body.get("content") or "", "timestamp": _now(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": body.get("embeds") or [], "components": body.get("components") or [], "pinned": False,
            "type": 0, "flags": body.get("flags") or 0,
        }
        if webhook:
            message |= {"webhook_id": str(APP_ID), "application_id": str(APP_ID)}
        self.messages[message_id] = message
        return message

    # --- REST -------------------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.Response:
        path = request.path.removeprefix(API)
        body: Any = None
        if request.can_read_body:
            text = await request.text()
            body = json.loads(text) if request.content_type == "application/json" else text
        recorded = Recorded(request.method, path, dict(request.query), body, request.headers.get("Authorization"))
        self.requests.append(recorded)
        response = await self._answer(recorded)
        recorded.status = response.status
        recorded.response = json.loads(response.body) if isinstance(response.body, bytes) else None
        await self._notify()  # after the answer is recorded, so a waiter sees it
        return response

    async def _answer(self, request: Recorded) -> web.Response:
        # Interaction callbacks and webhooks are authorised by the token in their path, the rest by the bot token.
        if not request.path.startswith(TOKEN_IN_PATH) and request.authorization != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if method == request.method and match:
                return await handler(match, request.body)
        self.unknown.append(f"{request.method} {request.path}")
        return _json({"message": f"Unknown route {request.method} {request.path} (fake Discord)", "code": 0},
                     status=404)

    async def _me(self, match: re.Match[str], body: Any) -> web.Response:
        return _json(self.bot_user())

    async def _application(self, match: re.Match[str], body: Any) -> web.Response:
        return _json({"id": str(APP_ID), "name": "cyoa", "description": "", "icon": None, "bot_public": False,
                      "bot_require_code_grant": False, "owner": self.player_user(), "team": None,
                      "verify_key": "0" * 64, "flags": 0, "bot": self.bot_user()})

    async def _gateway_bot(self, match: re.Match[str], body: Any) -> web.Response:
        return _json({"url": f"ws://127.0.0.1:{self.port}", "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})

    async def _sync_commands(self, match: re.Match[str], body: Any) -> web.Response:
        self.commands = [{"type": 1, **command, "id": str(next(self._ids)), "application_id": str(APP_ID),
                          "version": str(next(self._ids))} for command in body]
        return _json(self.commands)

    async def _callback(self, match: re.Match[str], body: Any) -> web.Response:
        kind = body["type"]
        data = body.get("data") or {}
        answer: Json = {"interaction": {"id": match["id"], "type": 2,
                                        "response_message_loading": kind == 5,
                                        "response_message_ephemeral": bool((data.get("flags") or 0) & 64)},
                        "resource": {"type": kind}}
        if kind in (4, 5):  # a message (or the "thinking..." one) now stands for the response
            message = self._message(CHANNEL_ID, data if kind == 4 else {"flags": 128}, webhook=True)
            answer["interaction"]["response_message_id"] = message["id"]
            answer["resource"]["message"] = message
        return _json(answer)

    async def _followup(self, match: re.Match[str], body: Any) -> web.Response:
        return _json(self._message(CHANNEL_ID, body, webhook=True))

    async def _edit_original(self, match: re.Match[str], body: Any) -> web.Response:
        return _json(self._message(CHANNEL_ID, body, webhook=True))

    async def _create_message(self, match: re.Match[str], body: Any) -> web.Response:
        return _json(self._message(int(match["channel"]), body))

    async def _edit_message(self, match: re.Match[str], body: Any) -> web.Response:
        """A scene streamed while it is written: its message is edited in place."""
        message = self.messages.get(int(match["message"]))
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = body[key] or ([] if key != "content" else "")
        message["edited_timestamp"] = _now()
        return _json(message)

    async def _add_own_reaction(self, match: re.Match[str], body: Any) -> web.Response:
        message_id = int(match["message"])
        if message_id not in self.messages:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        await self.dispatch("MESSAGE_REACTION_ADD", self.reaction_add(BOT_ID, message_id, match["emoji"]))
        return web.Response(status=204)  # no body, so no content type


def _json(payload: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": discord.py compares the header whole and reads anything else as text.
    return web.Response(status=status, body=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})


def _now() -> str:
    return datetime.now(UTC).isoformat()
