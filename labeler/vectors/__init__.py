"""Vectors: the FAISS index, the catalog's stored vectors, the keeper that holds the index in step, and the model registry."""
