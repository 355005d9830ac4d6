"""Stage 6: sidecar and file-name captions, captioner loading, and concept balancing."""

import json

import numpy as np
import pytest

from kinema.data.curate.captions import balance_concepts, caption_embeddings, file_caption, load_captioner
from kinema.errors import KinemaError
from tests.conftest import require_extra


def test_caption_sources(tmp_path):
    video = tmp_path / "a_dog-running.mp4"
    video.write_bytes(b"")
    assert file_caption(video) == ("a dog running", "filename")
    (tmp_path / "a_dog-running.json").write_text(json.dumps({"caption": "a dog on a beach"}))
    assert file_caption(video) == ("a dog on a beach", "sidecar_json")
    (tmp_path / "a_dog-running.txt").write_text("  a brown dog runs  \n")
    assert file_caption(video) == ("a brown dog runs", "sidecar_txt")


def test_captioner_errors_are_one_line():
    with pytest.raises(KinemaError, match="no_such_module"):
        load_captioner("no_such_module:caption")
    with pytest.raises(KinemaError, match="nothing_here"):
        load_captioner("json:nothing_here")
    assert load_captioner("tests.data.curate.conftest:brightness_caption")(np.zeros((1, 2, 2, 3)), 8.0, "x")


def test_balancing_caps_each_cluster_and_keeps_the_best():
    embeddings = np.array([[1, 0], [0.99, 0.1], [0.98, 0.2], [0, 1], [0.1, 0.99]], dtype=np.float32)
    labels, keep = balance_concepts(embeddings, [1, 3, 2, 5, 4], clusters=2, max_per_cluster=1)
    assert labels[0] == labels[1] == labels[2] != labels[3] == labels[4]
    assert keep.tolist() == [False, True, False, True, False]


def test_fewer_clips_than_clusters():
    embeddings = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    labels, keep = balance_concepts(embeddings, [1, 2, 3], clusters=8, max_per_cluster=1)
    assert len(set(labels.tolist())) == 2  # k shrinks to the distinct embeddings, no empty clusters
    assert keep.tolist() == [False, True, True]
    labels, keep = balance_concepts(embeddings[:1], [1], clusters=8, max_per_cluster=5)
    assert labels.tolist() == [0] and keep.tolist() == [True]


def test_minilm_embeddings_group_by_meaning(monkeypatch):
    require_extra("sklearn", "curate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = caption_embeddings(
        ["a cat sleeping on a sofa", "a kitten napping on a couch", "a truck on a highway"]
    )
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
