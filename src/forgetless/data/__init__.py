"""Data: sources of images, benchmark builders, and the Stream of Tasks they produce."""
