"""Models: where base models come from, loading them safely, and running them (PyTorch and ONNX)."""
