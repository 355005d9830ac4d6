"""Rectified flow: noising, targets and losses for training; samplers and guidance for generation."""
