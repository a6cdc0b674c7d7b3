"""Detector service: waveform packets -> time-aligned chunks -> batched stateful ONNX model -> station scores."""
