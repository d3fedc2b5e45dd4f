"""Training a policy/value net on the NPZ export, and playing with it (docs/training.md).

Needs the ``train`` extra (PyTorch for training; onnxruntime for playing with a net):
``ringrift-train``, ``ringrift-eval`` and the ``onnx:PATH`` self-play policy.
"""
