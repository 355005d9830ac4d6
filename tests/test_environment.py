"""The installed environment: one working, headless OpenCV, even beside scenedetect (which asks for the GUI build)."""

import importlib.metadata

import cv2
import numpy as np

from tests.conftest import require_extra

OPENCV_DISTRIBUTIONS = {
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
}


def test_exactly_one_opencv_and_it_is_headless():
    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    assert installed & OPENCV_DISTRIBUTIONS == {"opencv-python-headless"}


def test_cv2_works():
    image = np.zeros((32, 32, 3), np.uint8)
    cv2.circle(image, (16, 16), 8, (255, 255, 255), -1)
    assert cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[16, 16] == 255
    gui = next(line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:"))
    assert gui.split(":")[1].strip() == "NONE"  # headless: no highgui window backend


def test_scenedetect_runs_on_the_headless_cv2():
    scenedetect = require_extra("scenedetect", "curate")
    detector = scenedetect.ContentDetector(threshold=30, min_scene_len=5)
    frames = [np.full((48, 64, 3), 30 if i < 20 else 220, np.uint8) for i in range(40)]
    for i, frame in enumerate(frames):
        frame[:, (i % 8) * 8 : (i % 8) * 8 + 8] = 128  # some texture, so a frame is not all one value
    cuts = [
        c.frame_num
        for i, f in enumerate(frames)
        for c in detector.process_frame(scenedetect.FrameTimecode(i, 25.0), f)
    ]
    assert cuts == [20]
