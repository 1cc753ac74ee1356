"""Stage 2, measurement (NumPy/OpenCV only, no torch): ellipses, masks, quality, biometry, metrics,
overlays."""
