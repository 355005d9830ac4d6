"""Models: the causal video VAE, the video DiT in the Wan layout, and text encoders."""
