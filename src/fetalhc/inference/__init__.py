"""Stage 5, inference: the segmenter (PyTorch / ONNX Runtime), the measurer, evaluation,
batch prediction."""
