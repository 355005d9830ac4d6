"""`kinema play`: the real server process, driven over WebSockets and from a real headless Chromium."""

import base64
import contextlib
import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kinema.serve.app import BadMessage, key_bindings, parse_message
from tests.conftest import require_extra

require_extra("fastapi", "web")
require_extra("uvicorn", "web")
websockets_client = require_extra("websockets.sync.client", "web")

BREAKOUT_ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT"]


@pytest.fixture(scope="module")
def world_folder(tiny_world) -> Path:
    return tiny_world[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def play_server(*options: str):
    """`kinema play OPTIONS` as a real process on a free port; yields its host:port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "kinema", "play", "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner = process.stdout.readline()
    try:
        assert f"http://127.0.0.1:{port}/" in banner, banner
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(world_folder):
    """`kinema play` of the tiny world model, room for 9 players; yields its host:port."""
    with play_server("--model", str(world_folder), "--max-players", "9") as address:
        yield address


def test_keys_bind_to_actions_by_name_and_digit():
    assert key_bindings(BREAKOUT_ACTIONS) == {
        "0": 0,
        "1": 1,
        "2": 2,
        "3": 3,
        "ArrowLeft": 3,
        "ArrowRight": 2,
        " ": 1,
    }
    doom = key_bindings(["NOOP", "MOVE_FORWARD", "TURN_RIGHT", "TURN_LEFT"])
    assert (doom["ArrowUp"], doom["ArrowRight"], doom["ArrowLeft"]) == (1, 2, 3) and " " not in doom


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('{"type": "jump"}', "unknown message type 'jump'"),
        ('{"type": "action"}', "'action' must be an integer in 0..3, got None"),
        ('{"type": "action", "action": 4}', "got 4"),
        ('{"type": "action", "action": true}', "got True"),
        ('{"type": "reset", "start": 3}', "'start' must be an integer in 0..2"),
        ('{"type": "action", "action": 1, "pad": "' + "x" * 2000 + '"}', "message too long"),
    ],
)
def test_malformed_messages_are_named(text, fragment):
    with pytest.raises(BadMessage) as error:
        parse_message(text, num_actions=4, num_starts=3)
    assert fragment in str(error.value)


def receive(ws, kind: str, timeout: float = 30.0) -> dict:
    """The next message of this type."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.time())))
        if message["type"] == kind:
            return message
    raise TimeoutError(kind)


def image_of(frame: dict) -> np.ndarray:
    data = frame["image"].removeprefix("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def test_a_player_gets_frames_made_with_the_held_action(server):
    with websockets_client.connect(f"ws://{server}/ws") as ws:
        hello = receive(ws, "hello")
        assert (
            hello["actions"] == BREAKOUT_ACTIONS and hello["starts"] == 3 and hello["keys"]["ArrowRight"] == 2
        )
        first = receive(ws, "frame")
        assert first["index"] == 0 and image_of(first).shape == (32, 32, 3)
        ws.send(json.dumps({"type": "action", "action": 2}))
        right = next(f for f in iter(lambda: receive(ws, "frame"), None) if f["action"] == 2)
        assert right["index"] > 0 and right["step_ms"] > 0
        ws.send(json.dumps({"type": "reset", "start": 1}))
        restarted = next(f for f in iter(lambda: receive(ws, "frame"), None) if f["index"] == 0)
        assert restarted["action"] == 0


def test_malformed_messages_get_an_error_and_the_game_goes_on(server):
    with websockets_client.connect(f"ws://{server}/ws") as ws:
        receive(ws, "frame")
        for bad in ("{oops", '{"type": "action", "action": 9}', '"reset"'):
            ws.send(bad)
            assert receive(ws, "error")["message"]
        ws.send(b"\x00\x01binary")  # not text at all
        before = receive(ws, "frame")["index"]
        assert receive(ws, "frame")["index"] > before, "still streaming"


def players_on(server: str) -> int:
    with urllib.request.urlopen(f"http://{server}/info", timeout=10) as response:
        return json.load(response)["players"]


def connect_players(stack: contextlib.ExitStack, server: str, count: int) -> list:
    """`count` open connections, once the players of earlier tests have gone."""
    deadline = time.time() + 30
    while players_on(server) and time.time() < deadline:
        time.sleep(0.05)
    return [stack.enter_context(websockets_client.connect(f"ws://{server}/ws")) for _ in range(count)]


def test_eight_players_at_once_each_have_their_own_game(server):
    with contextlib.ExitStack() as stack:
        players = connect_players(stack, server, 8)
        assert players_on(server) == 8
        for i, ws in enumerate(players):
            ws.send(json.dumps({"type": "action", "action": i % 4}))
        for i, ws in enumerate(players):
            made = next(f for f in iter(lambda ws=ws: receive(ws, "frame"), None) if f["index"] >= 2)
            assert made["action"] == i % 4, "each player's frames follow its own keys"
        with websockets_client.connect(f"ws://{server}/ws") as ninth:  # --max-players 9: still room
            receive(ninth, "frame")


def test_a_tenth_player_is_told_the_server_is_full(server):
    with contextlib.ExitStack() as stack:
        for ws in connect_players(stack, server, 9):
            receive(ws, "hello")
        with websockets_client.connect(f"ws://{server}/ws") as tenth:
            assert "server is full" in receive(tenth, "error")["message"]


def test_the_page_plays_with_the_keyboard_in_a_real_browser(server, browser):
    page = browser.new_page()
    page.goto(f"http://{server}/")
    page.wait_for_function("Number(document.body.dataset.frames || 0) >= 3", timeout=30_000)
    assert "ArrowRight" in page.inner_text("#keys") and "RIGHT" in page.inner_text("#keys")
    before = page.evaluate("document.getElementById('screen').toDataURL()")
    page.keyboard.down("ArrowRight")
    page.wait_for_function("document.getElementById('action').textContent === 'RIGHT'", timeout=30_000)
    page.wait_for_function("document.getElementById('latency').textContent !== '-'", timeout=30_000)
    page.keyboard.up("ArrowRight")
    after = page.evaluate("document.getElementById('screen').toDataURL()")
    assert before != after, "the canvas shows new frames"
    assert float(page.inner_text("#fps")) > 0 and float(page.inner_text("#latency")) > 0
    frames = int(page.evaluate("document.body.dataset.frames"))
    page.click("#reset")
    page.wait_for_function(f"Number(document.body.dataset.frames) > {frames}", timeout=30_000)
    page.wait_for_function(
        "document.getElementById('frame').textContent === '0' || Number(document.getElementById('frame').textContent) < 5",
        timeout=30_000,
    )
    assert page.inner_text("#error") == ""
    page.close()


def test_play_serves_the_bundled_breakout_model_by_default():
    with play_server() as address, websockets_client.connect(f"ws://{address}/ws") as ws:
        assert receive(ws, "hello")["actions"] == BREAKOUT_ACTIONS
        assert image_of(receive(ws, "frame")).shape == (64, 64, 3)
        ws.send(json.dumps({"type": "action", "action": 3}))
        left = next(f for f in iter(lambda: receive(ws, "frame"), None) if f["action"] == 3)
        assert left["index"] > 0


def test_play_with_a_missing_model_folder_says_so():
    result = subprocess.run(
        [sys.executable, "-m", "kinema", "play", "--model", "no/such/model"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "model folder not found: no/such/model" in result.stderr
