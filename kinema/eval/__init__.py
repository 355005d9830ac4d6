"""Scoring video files: metrics, ground-truth checkers, Fréchet distances, reports and sweeps."""
