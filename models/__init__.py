"""The EEW detector network in two halves.

The runtime (``contract``: the tensor contract beside the weights; ``runtime``: the ONNX Runtime
session; ``exceptions``) is what ``eew detect`` loads: it needs only the core install (NumPy,
pydantic, onnxruntime) and imports no torch. Training, evaluation and export (``network``,
``train``, ``export``, ``data``, ``evaluate``, ...) need the ``train`` extra (torch, onnx, h5py).
The shipped model is ``eew_cnnlstm_v1/``; see ``MODEL_CARD.md``.
"""
