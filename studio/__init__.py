"""Colorflow Studio: a web page where people colorize their photos and films with any registered model."""
