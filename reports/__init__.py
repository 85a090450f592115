"""Comparison reports built from the MLflow runs of a grid."""
