"""Neural network building blocks: feature extractors and heads."""
