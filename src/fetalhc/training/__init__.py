"""Stage 6, training: the recipe (TrainConfig), datasets, the training loop."""
