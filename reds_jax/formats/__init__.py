"""Checkpoint-format readers that need neither torch nor TensorFlow: torch zip/pickle, tfjs."""
