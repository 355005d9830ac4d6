"""Which recorder policy visits the most varied states: random, sticky and explore, side by side.

Each policy plays the same episodes (same env seeds) of each game for `--frames` frames through
`kinema.data.games.play_episode`, and the script prints, per game and policy:

- screens: distinct 16x16 grey thumbnails at 4 levels per 1000 frames (a coarser view than the
  explore policy's own 8x8 count, so it does not grade itself);
- still: the fraction of steps that left the screen unchanged (mean |change| under 1 grey level);
- episode length and return (the game's own reward);
- ViZDoom only: distinct 64x64-unit map cells the player stood in per 1000 frames, read from the
  game's POSITION_X/Y, a measure of ground covered that no policy sees.

    python benchmarks/record_policies.py --frames 3000
"""

from __future__ import annotations

import argparse
import statistics

import cv2
import gymnasium as gym
import numpy as np
from vizdoom import GameVariable

from kinema.data.games import POLICIES, RecordSettings, make_env, play_episode

GAMES = ("VizdoomHealthGatheringSupreme-v1", "VizdoomMyWayHome-v1", "ALE/Breakout-v5")
CELL = 64.0  # map units per cell (a Doom corridor is about 128 wide)


class PositionLog(gym.Wrapper):
    """A ViZDoom env that keeps the map cell the player stands in after each step."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.cells: set[tuple[int, int]] = set()

    def step(self, action):
        """The env's step, then the player's cell, unless the episode just ended."""
        result = self.env.step(action)
        game = self.env.unwrapped.game
        if not game.is_episode_finished():
            x = game.get_game_variable(GameVariable.POSITION_X)
            y = game.get_game_variable(GameVariable.POSITION_Y)
            self.cells.add((round(x / CELL), round(y / CELL)))
        return result


def thumbs(frames: np.ndarray) -> set[bytes]:
    """The distinct coarse views among the frames."""
    grey = [
        cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (16, 16), interpolation=cv2.INTER_AREA)
        for f in frames
    ]
    return {(g // 64).tobytes() for g in grey}


def measure(game: str, policy: str, frames: int, frame_skip: int | None) -> dict[str, float]:
    """Play `frames` frames of `game` with `policy` and return the measures."""
    settings = RecordSettings(env_id=game, frames=frames, policy=policy, frame_skip=frame_skip)
    env = make_env(settings)
    log = None
    if game.startswith("Vizdoom"):
        env = log = PositionLog(env)
    seen, still, lengths, returns, done, episode = set(), [], [], [], 0, 0
    try:
        while done < frames:
            video, _, _, total = play_episode(env, settings, episode, min(1000, frames - done))
            seen |= thumbs(video)
            change = np.abs(np.diff(video.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
            still += list(change < 1.0)
            lengths.append(len(video))
            returns.append(total)
            done += len(video)
            episode += 1
    finally:
        env.close()
    row = {
        "screens": 1000 * len(seen) / done,
        "still": float(np.mean(still)),
        "length": statistics.mean(lengths),
        "return": statistics.mean(returns),
    }
    if log is not None:
        row["cells"] = 1000 * len(log.cells) / done
    return row


def main() -> None:
    """Measure every policy on every game and print one table per game."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000, help="frames per game and policy")
    parser.add_argument("--games", nargs="+", default=list(GAMES))
    parser.add_argument("--frame-skip", type=int, default=4, help="env frames per step (default 4)")
    args = parser.parse_args()
    for game in args.games:
        print(f"\n{game}, {args.frames} frames a policy, frame skip {args.frame_skip}")
        print(
            f"{'policy':8} {'screens/1k':>10} {'still':>6} {'ep. length':>10} {'return':>8} {'cells/1k':>9}"
        )
        for policy in POLICIES:
            row = measure(game, policy, args.frames, args.frame_skip)
            cells = f"{row['cells']:9.1f}" if "cells" in row else f"{'-':>9}"
            print(
                f"{policy:8} {row['screens']:10.1f} {row['still']:6.1%} {row['length']:10.1f} "
                f"{row['return']:8.2f} {cells}"
            )


if __name__ == "__main__":
    main()
