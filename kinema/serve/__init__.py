"""Serving: `kinema play`, a page where a person plays a world model with the keyboard."""
