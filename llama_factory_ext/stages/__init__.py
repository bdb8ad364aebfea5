"""Built-in training stages."""
