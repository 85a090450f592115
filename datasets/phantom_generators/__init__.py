"""Generators that write synthetic data in the real layouts, so the real loaders read them."""
