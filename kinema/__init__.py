"""Kinema: from raw video to generated video and playable world models."""

__version__ = "0.1.0"
