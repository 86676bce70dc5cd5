"""Labeling: bulk auto-labeling with prompt ensembles, evaluation, learning from reviews and the prompt lab."""
