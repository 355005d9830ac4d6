"""The installed environment: one working, headless OpenCV."""

import importlib.metadata

import cv2
import numpy as np

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
