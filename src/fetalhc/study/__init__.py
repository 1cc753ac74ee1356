"""Stage 7, studies: the grid of cells, running it, the report beside the paper's tables."""
