"""Stage 3, data: the HC18 layout, group-aware splits, checks, download."""
