"""Game recorder: play a Gymnasium env with a simple policy and write clips, actions and episode bounds.

Policies: uniform random; sticky (a random action held for `hold` steps on average); explore,
sticky play that leaves actions which stop changing the screen and favours those that led to
screens not yet seen in the episode.

Every clip's record carries `actions`, one discrete action per frame: `actions[t]` is the action
whose step produced frame t, and the first frame of an episode (the reset) gets 0, which is the
no-op in both ALE and ViZDoom. A world model conditions frame t on `actions[t]`. Episodes are
split into clips of at most `clip_frames`; `meta` gives the episode, the clip's first frame in
it, and whether the clip ends the episode (and whether the game ended it, or a length cap).

Episode e is a pure function of (seed, e): the env and the policy are both seeded from them, so
an interrupted recording resumes by replaying the unfinished episode exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from kinema.data.manifest import ClipRecord, read_manifest, relative_to_manifest, write_manifest
from kinema.errors import KinemaError
from kinema.io import atomic_write_text, write_video

POLICIES = ("random", "sticky", "explore")
# The explore policy tells screens apart by an 8x8 grey thumbnail at 8 levels, counts how often it
# has seen each this episode, and calls the screen still when no thumbnail pixel moved 2 levels.
THUMB_SIDE, THUMB_LEVELS, STILL_LEVELS = 8, 8, 2.0
STUCK_STEPS = 3  # still screens in a row after which the held action is dropped
NOVELTY_RATE = 0.3  # how fast an action's score follows the novelty of the screens it leads to
TEMPERATURE = 0.15  # of the softmax over scores that picks the next action


@dataclass
class RecordSettings:
    """What to record and how; everything but `frames` must match to resume a recording."""

    env_id: str
    frames: int
    width: int = 64
    height: int = 64
    policy: str = "sticky"
    hold: float = 4.0  # sticky and explore policies: mean number of steps an action is held
    clip_frames: int = 256
    max_episode_frames: int = 1000
    fps: float = 15.0
    frame_skip: int | None = None  # passed to the env when set (ViZDoom: tics per step)
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for key in ("frames", "width", "height", "clip_frames", "max_episode_frames"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.width % 2 or self.height % 2:
            raise ValueError(f"mp4 (H.264) needs an even size, got {self.width}x{self.height}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got '{self.policy}'")
        if self.hold < 1:
            raise ValueError(f"hold must be >= 1 step, got {self.hold}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.frame_skip is not None and self.frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {self.frame_skip}")


def make_env(settings: RecordSettings) -> Any:
    """The Gymnasium env, with ALE and ViZDoom registered; a clear error if it can't be made."""
    try:
        import gymnasium as gym
    except ImportError:
        raise KinemaError("recording games needs the games extra: pip install 'kinema[games]'") from None
    _register_game_envs(gym)
    if settings.env_id not in gym.registry:
        examples = "ALE/Breakout-v5, VizdoomBasic-v1, VizdoomHealthGathering-v1"
        raise KinemaError(f"unknown environment '{settings.env_id}' (examples: {examples})")
    kwargs: dict[str, Any] = {}
    if settings.env_id.startswith("ALE/"):
        # ALE's own sticky actions would repeat the previous action behind our back and make the
        # recorded labels wrong; our policy does its own, recorded, stickiness.
        kwargs["repeat_action_probability"] = 0.0
    if settings.frame_skip is not None:
        kwargs["frameskip" if settings.env_id.startswith("ALE/") else "frame_skip"] = settings.frame_skip
    env = gym.make(settings.env_id, **kwargs)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise KinemaError(
            f"{settings.env_id}: only discrete action spaces can be recorded, got {env.action_space}"
        )
    return env


def _register_game_envs(gym: Any) -> None:
    """Register the ALE and ViZDoom envs of whichever of the two is installed."""
    with contextlib.suppress(ImportError):
        import ale_py

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on every env
        gym.register_envs(ale_py)
    with contextlib.suppress(ImportError):
        import vizdoom.gymnasium_wrapper  # noqa: F401  (registers the Vizdoom* ids on import)


def action_names(env: Any) -> list[str]:
    """A readable name per discrete action: ALE's meanings, ViZDoom's pressed buttons, or numbers."""
    game = env.unwrapped
    if hasattr(game, "get_action_meanings"):
        return list(game.get_action_meanings())
    if hasattr(game, "button_map") and hasattr(game, "game"):
        buttons = [b.name for b in game.game.get_available_buttons()]
        buttons = buttons[len(buttons) - len(game.button_map[0]) :]
        return [
            "+".join(b for b, on in zip(buttons, pressed, strict=True) if on) or "NOOP"
            for pressed in game.button_map
        ]
    return [str(i) for i in range(env.action_space.n)]


def screen(observation: Any) -> np.ndarray:
    """The RGB image in an observation: the array itself, or ViZDoom's `screen` entry."""
    image = observation.get("screen") if isinstance(observation, dict) else observation
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise KinemaError(f"the env's observations are not RGB images (got {shape})")
    return image


def episode_seeds(seed: int, episode: int) -> tuple[int, np.random.Generator]:
    """The env's reset seed and the policy's generator for one episode."""
    env_seed, policy_seed = np.random.SeedSequence([seed, episode]).generate_state(2)
    return int(env_seed), np.random.default_rng(int(policy_seed))


def next_action(settings: RecordSettings, rng: np.random.Generator, previous: int | None, n: int) -> int:
    """The policy's action: uniform, or (sticky) the previous one kept with probability 1 - 1/hold."""
    if settings.policy == "sticky" and previous is not None and rng.random() >= 1 / settings.hold:
        return previous
    return int(rng.integers(n))


class ExplorePolicy:
    """Sticky-random play that seeks screens it has not seen this episode (count-based novelty).

    Each action keeps a score: a running mean of the novelty, 1/√count, of the screens it led to.
    When the held action ends (as sticky's do) or has left the screen still for `STUCK_STEPS`
    steps (a wall, an edge), the next one is drawn by a softmax over the scores, the stuck one
    left out. Counts start afresh every episode, so an episode stays a function of (seed, episode).
    """

    def __init__(self, hold: float, rng: np.random.Generator, num_actions: int) -> None:
        self.hold, self.rng = hold, rng
        self.counts: Counter[bytes] = Counter()
        self.scores = np.ones(num_actions)
        self.action: int | None = None
        self.thumb: np.ndarray | None = None
        self.still = 0

    def __call__(self, frame: np.ndarray) -> int:
        """The action to take on this screen."""
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        thumb = cv2.resize(grey, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
        signature = (thumb * THUMB_LEVELS / 256).astype(np.uint8).tobytes()
        self.counts[signature] += 1
        if self.action is not None:
            novelty = self.counts[signature] ** -0.5
            self.scores[self.action] += NOVELTY_RATE * (novelty - self.scores[self.action])
            moved = np.abs(thumb - self.thumb).max() >= STILL_LEVELS
            self.still = 0 if moved else self.still + 1
        self.thumb = thumb
        stuck = self.still >= STUCK_STEPS
        if self.action is None or stuck or self.rng.random() < 1 / self.hold:
            weights = np.exp((self.scores - self.scores.max()) / TEMPERATURE)
            if stuck and len(weights) > 1:
                weights[self.action], self.still = 0.0, 0
            self.action = int(self.rng.choice(len(weights), p=weights / weights.sum()))
        return self.action


def make_policy(
    settings: RecordSettings, rng: np.random.Generator, num_actions: int
) -> Callable[[np.ndarray], int]:
    """An episode's policy: a function from the screen it sees to the next action."""
    if settings.policy == "explore":
        return ExplorePolicy(settings.hold, rng, num_actions)
    previous: int | None = None

    def random_or_sticky(_screen: np.ndarray) -> int:
        nonlocal previous
        previous = next_action(settings, rng, previous, num_actions)
        return previous

    return random_or_sticky


def play_episode(
    env: Any, settings: RecordSettings, episode: int, limit: int
) -> tuple[np.ndarray, list[int], bool, float]:
    """Play one episode for at most `limit` frames: resized uint8 frames, actions, whether the game
    ended it, and the rewards summed."""
    env_seed, rng = episode_seeds(settings.seed, episode)
    policy = make_policy(settings, rng, env.action_space.n)
    observation, _ = env.reset(seed=env_seed)
    frames, actions, ended, total = [_resize(screen(observation), settings)], [0], False, 0.0
    while len(frames) < limit and not ended:
        action = policy(frames[-1])
        observation, reward, terminated, truncated, _ = env.step(action)
        ended, total = terminated or truncated, total + float(reward)
        image = screen(observation)
        if ended and not image.any():
            break  # ViZDoom has no screen after the last step and returns a black placeholder
        frames.append(_resize(image, settings))
        actions.append(action)
    return np.stack(frames), actions, ended, total


def _resize(image: np.ndarray, settings: RecordSettings) -> np.ndarray:
    """The frame at the recording size (area filter: the right one for shrinking)."""
    if image.shape[:2] == (settings.height, settings.width):
        return np.ascontiguousarray(image)
    return cv2.resize(image, (settings.width, settings.height), interpolation=cv2.INTER_AREA)


def record(out_dir: str | os.PathLike, settings: RecordSettings, progress: bool = True) -> Path:
    """Record `settings.frames` frames into clips plus manifest.jsonl; resumes a stopped recording."""
    settings.validate()
    out = Path(out_dir)
    manifest = out / "manifest.jsonl"
    env = make_env(settings)
    try:
        names = action_names(env)
        records = _resume(out, manifest, settings, names)
        done = sum(r.num_frames for r in records)
        episode = 1 + max((r.meta["episode"] for r in records), default=-1)
        with tqdm(
            total=settings.frames, initial=done, desc="record", unit="frame", disable=not progress
        ) as bar:
            while done < settings.frames:
                limit = min(settings.max_episode_frames, settings.frames - done)
                frames, actions, ended, total = play_episode(env, settings, episode, limit)
                records += _write_episode(manifest, settings, episode, frames, actions, ended, total)
                write_manifest(manifest, records)
                done += len(frames)
                bar.update(len(frames))
                episode += 1
    finally:
        env.close()
    return manifest


def _resume(out: Path, manifest: Path, settings: RecordSettings, names: list[str]) -> list[ClipRecord]:
    """The records already finished in `out`, after checking they were made with the same settings."""
    info_path = out / "recording.json"
    wanted = {"settings": asdict(settings) | {"frames": None}, "action_names": names}
    if info_path.is_file():
        found = json.loads(info_path.read_text(encoding="utf-8"))
        changed = sorted(k for k, v in wanted["settings"].items() if found["settings"].get(k) != v)
        if changed or found["action_names"] != names:
            what = ", ".join(changed) or "action_names"
            raise KinemaError(f"{out} holds a recording made with other settings ({what}); use another --out")
    atomic_write_text(info_path, json.dumps(wanted, indent=1) + "\n")
    return read_manifest(manifest) if manifest.is_file() else []


def _write_episode(
    manifest: Path,
    settings: RecordSettings,
    episode: int,
    frames: np.ndarray,
    actions: list[int],
    ended: bool,
    total_reward: float,
) -> list[ClipRecord]:
    """Write one episode as clips of at most `clip_frames` and return their records."""
    records = []
    for start in range(0, len(frames), settings.clip_frames):
        stop = min(start + settings.clip_frames, len(frames))
        path = manifest.parent / "clips" / f"ep{episode:05d}_{start // settings.clip_frames:03d}.mp4"
        write_video(path, frames[start:stop], settings.fps, crf=12)
        last = stop == len(frames)
        meta = {"env": settings.env_id, "episode": episode, "start": start, "episode_end": last}
        if last:
            meta |= {"game_over": ended, "return": total_reward}
        records.append(
            ClipRecord(
                path=relative_to_manifest(path, manifest),
                fps=settings.fps,
                num_frames=stop - start,
                width=settings.width,
                height=settings.height,
                caption=settings.env_id,
                actions=actions[start:stop],
                meta=meta,
            )
        )
    return records
