"""Stage 2: PySceneDetect fed the frames of the one decoding pass."""

import pytest

from kinema.data.curate.recipe import AnalysisOptions
from kinema.data.curate.scenes import CutFinder, scene_ranges
from kinema.io.video import iter_frames
from tests.conftest import require_extra
from tests.data.curate.conftest import CUT_FRAMES, FPS


@pytest.mark.parametrize("detector", ["content", "adaptive"])
def test_cuts_of_joined_test_sources(corpus, detector):
    require_extra("scenedetect", "curate")
    threshold = 30.0 if detector == "content" else 3.0
    finder = CutFinder(AnalysisOptions(detector=detector, threshold=threshold), FPS)
    for frame in iter_frames(corpus.root / corpus.cuts_file, max_width=256, format="bgr24"):
        finder.feed(frame)
    cuts = finder.cuts()
    assert len(cuts) == len(CUT_FRAMES)
    assert all(abs(a - b) <= 1 for a, b in zip(cuts, CUT_FRAMES, strict=True)), cuts


def test_one_shot_has_no_cuts(corpus):
    finder = CutFinder(AnalysisOptions(), 29.97)
    for frame in iter_frames(corpus.root / "carphone_pristine.mp4", format="bgr24"):
        finder.feed(frame)
    assert finder.cuts() == []
    assert finder.cuts() == []  # asking twice is harmless


def test_scene_ranges_cover_the_video():
    assert scene_ranges([50, 100], 150) == [(0, 50), (50, 100), (100, 150)]
    assert scene_ranges([], 10) == [(0, 10)]
    assert scene_ranges([0, 10, 12], 10) == [(0, 10)]


def test_unknown_detector_is_refused():
    with pytest.raises(ValueError, match="detector"):
        AnalysisOptions(detector="histogram")
