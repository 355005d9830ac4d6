"""The bundled Breakout world model: fp16 within budget, and a paddle that follows the keys as the real game's does.

These run the real trained weights against the real game (ale-py), seeded, so each run is the same.
"""

import cv2
import numpy as np
import pytest

from kinema.data.games import RecordSettings, make_env, screen
from kinema.generate.world import BUNDLED_WORLD, WorldModel, start_frames
from tests.conftest import assert_shipped_in_fp16, require_extra

RIGHT, LEFT = 2, 3
PADDLE_ROWS = slice(56, 61)  # where Breakout's paddle lies in a 64x64 frame
PLAY_COLUMNS = slice(3, 58)  # inside the walls, clear of the walls' coloured feet


def paddle_x(frame: np.ndarray) -> float:
    """The paddle's centre column from the red (red minus green) in its rows; nan where it does not show."""
    rows = frame[PADDLE_ROWS, PLAY_COLUMNS].astype(int)
    red = np.clip(rows[..., 0] - rows[..., 1] - 10, 0, None).sum(0)
    if red.sum() < 100:
        return float("nan")
    return float((red * np.arange(len(red))).sum() / red.sum()) + PLAY_COLUMNS.start


def real_game(actions: list[int], seed: int) -> np.ndarray:
    """The real Breakout at 64x64: the frame after reset, then one frame per action."""
    require_extra("ale_py", "games")
    env = make_env(RecordSettings("ALE/Breakout-v5", frames=1))
    try:
        observation, _ = env.reset(seed=seed)
        frames = [screen(observation)] + [screen(env.step(a)[0]) for a in actions]
    finally:
        env.close()
    return np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in frames])  # as recorded


@pytest.fixture(scope="module")
def world() -> WorldModel:
    return WorldModel.from_pretrained(BUNDLED_WORLD)


def test_bundled_world_is_fp16_within_budget_and_ships_start_frames():
    assert_shipped_in_fp16(BUNDLED_WORLD)
    assert start_frames(BUNDLED_WORLD).shape[1:] == (64, 64, 3)


def test_paddle_follows_the_keys_like_the_real_games(world):
    # From the real game's first frame, hold LEFT, then RIGHT. The game moves the paddle about
    # 9 px a step at 64x64 (and turns a step late); the model should follow at that pace.
    keys = [LEFT] * 3 + [RIGHT] * 3
    truth = real_game(keys, seed=0)
    made = world.rollout(truth[0], keys, seed=0)
    real_x, made_x = [paddle_x(f) for f in truth], [paddle_x(f) for f in made]
    assert np.isfinite(real_x).all() and np.isfinite(made_x).all(), made_x
    assert (np.diff(real_x[:4]) < -4).all() and real_x[6] > real_x[3] + 10, real_x  # the game itself
    # Measured 2026-11-23: real 42.3 37.5 28.7 19.1 19.9 29.1 37.9, made 42.3 36.8 29.7 21.2 29.4 36.6 33.9.
    assert (np.diff(made_x[:4]) < -3).all(), made_x
    assert abs(made_x[3] - real_x[3]) < 8, (made_x, real_x)
    assert made_x[6] > made_x[3] + 10, made_x
