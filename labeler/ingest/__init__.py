"""Ingest: walking folders and registering files, the pipeline's stages, and the local and Ray engines that run them."""
