"""The EEW detector network: training, evaluation, ONNX export, and the shipped model."""
