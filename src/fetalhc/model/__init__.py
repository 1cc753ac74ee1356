"""Stage 4, the model: config, preprocessing, U-Nets, crops, strategies, checkpoints, export,
the bundled weights."""
