"""Built-in fine-tuning strategies: one folder each, with its own args schema."""
