"""`kinema play`: a FastAPI server and one static page where a person plays a world model.

Every WebSocket connection is a player with a `Game` of its own (KV cache, decoder state, noise)
over the one shared model. All model work runs on one worker thread: players take turns fairly,
torch's own threads are not oversubscribed, and the event loop stays free to read keys.

From the page (JSON text):
  {"type": "action", "action": 2}   the action held from now on (0, the no-op, when no key is down)
  {"type": "reset", "start": 1}     restart from real first frame 1 (leave `start` out for a random one)
To the page:
  {"type": "hello", ...}            actions, key bindings, size, fps and how many start frames there are
  {"type": "frame", ...}            a PNG data URL, its index, the action it was made with, step_ms
  {"type": "error", "message": ...} a malformed or invalid message; the game goes on
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image

from kinema.generate.world import WorldModel

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MAX_MESSAGE = 1000  # characters; the page's messages are a few dozen
NAMED_KEYS = {
    "ArrowLeft": ("LEFT", "TURN_LEFT", "MOVE_LEFT"),
    "ArrowRight": ("RIGHT", "TURN_RIGHT", "MOVE_RIGHT"),
    "ArrowUp": ("UP", "MOVE_FORWARD"),
    "ArrowDown": ("DOWN", "MOVE_BACKWARD"),
    " ": ("FIRE", "ATTACK"),
}


class BadMessage(ValueError):
    """A message from the page that can't be acted on."""


def key_bindings(action_names: list[str]) -> dict[str, int]:
    """Keys to actions: arrows and space by the actions' names, and digit keys for the first ten."""
    keys = {str(i): i for i in range(min(10, len(action_names)))}
    for key, names in NAMED_KEYS.items():
        match = next((i for i, name in enumerate(action_names) if name in names), None)
        if match is not None:
            keys[key] = match
    return keys


def parse_message(text: str, num_actions: int, num_starts: int) -> dict[str, Any]:
    """A validated message from the page; BadMessage says what is wrong with it."""
    if len(text) > MAX_MESSAGE:
        raise BadMessage(f"message too long ({len(text)} characters, at most {MAX_MESSAGE})")
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        raise BadMessage("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise BadMessage(f"message must be a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    if kind == "action":
        action = message.get("action")
        if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action < num_actions:
            raise BadMessage(f"'action' must be an integer in 0..{num_actions - 1}, got {action!r}")
        return {"type": "action", "action": action}
    if kind == "reset":
        start = message.get("start")
        if start is not None and (
            isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < num_starts
        ):
            raise BadMessage(f"'start' must be an integer in 0..{num_starts - 1}, got {start!r}")
        return {"type": "reset", "start": start}
    raise BadMessage(f"unknown message type {kind!r}; expected 'action' or 'reset'")


def png_data_url(frame: np.ndarray) -> str:
    """A uint8 (H, W, 3) frame as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class Player:
    """What one connection has asked for: the held action and a pending reset."""

    action: int = 0
    reset_to: int | None = None
    reset_asked: bool = False


def make_app(
    world: WorldModel, starts: np.ndarray, *, fps: float | None = None, max_players: int = 16
) -> FastAPI:
    """The play server over one loaded world model and its real start frames."""
    app = FastAPI(title="kinema play")
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kinema-world")
    names = world.info.action_names or [str(i) for i in range(world.num_actions)]
    period = 1.0 / (fps or world.info.fps)
    hello = {
        "type": "hello",
        "actions": names,
        "keys": key_bindings(names),
        "width": world.info.width,
        "height": world.info.height,
        "fps": 1.0 / period,
        "starts": len(starts),
    }
    players: set[int] = set()

    async def compute(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(worker, fn, *args)

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/info")
    async def info() -> JSONResponse:
        return JSONResponse({**hello, "players": len(players), "max_players": max_players})

    @app.websocket("/ws")
    async def play(ws: WebSocket) -> None:
        await ws.accept()
        if len(players) >= max_players:
            await ws.send_json({"type": "error", "message": f"the server is full ({max_players} players)"})
            await ws.close(code=1013)
            return
        players.add(id(ws))
        player = Player(reset_asked=True)
        reader = asyncio.create_task(_read_keys(ws, player, world.num_actions, len(starts)))
        try:
            await ws.send_json(hello)
            await _game_loop(ws, player, reader, world, starts, compute, period)
        except WebSocketDisconnect:
            pass  # the page went away mid-send
        except Exception as e:
            log.exception("a game failed")
            with contextlib.suppress(Exception):
                await ws.send_json({"type": "error", "message": f"the world model failed: {e}"})
                await ws.close(code=1011)
        finally:
            reader.cancel()
            players.discard(id(ws))

    return app


async def _read_keys(ws: WebSocket, player: Player, num_actions: int, num_starts: int) -> None:
    """Apply the page's messages to the player until it disconnects; answer bad ones with an error."""
    while True:
        received = await ws.receive()
        if received["type"] == "websocket.disconnect":
            return
        try:
            if received.get("text") is None:
                raise BadMessage("messages must be JSON text, got a binary message")
            message = parse_message(received["text"], num_actions, num_starts)
        except BadMessage as e:
            await ws.send_json({"type": "error", "message": str(e)})
            continue
        if message["type"] == "action":
            player.action = message["action"]
        else:
            player.reset_to, player.reset_asked = message["start"], True


async def _game_loop(
    ws, player: Player, reader: asyncio.Task, world: WorldModel, starts, compute, period: float
) -> None:
    """Make and send frames at the game's pace with the held action, until the page leaves."""
    game, index, seed = None, 0, random.randrange(2**31)
    while not reader.done():
        began = time.perf_counter()
        if player.reset_asked:
            start = player.reset_to if player.reset_to is not None else random.randrange(len(starts))
            player.reset_asked, seed = False, seed + 1
            game = await compute(world.new_game, starts[start], seed)
            frames, action, index = game.first_frame[None], 0, 0
        else:
            action = player.action
            frames = await compute(game.step, action)
        step_ms = 1000 * (time.perf_counter() - began)
        for frame in frames:
            message = {"type": "frame", "index": index, "action": action, "step_ms": round(step_ms, 1)}
            await ws.send_json({**message, "image": png_data_url(frame)})
            index += 1
        await asyncio.sleep(max(0.0, period - (time.perf_counter() - began)))
