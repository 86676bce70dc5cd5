"""labeler: label, search and review image collections with CLIP prompt ensembles."""
