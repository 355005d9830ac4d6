"""Generation: text/image to video, and streaming."""
