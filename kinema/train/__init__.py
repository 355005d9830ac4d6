"""One training loop for every recipe, with checkpoints that resume."""
