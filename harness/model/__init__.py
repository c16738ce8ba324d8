"""Models: what a model declares (``spec``), vetting an untrusted file (``vetting``),
ONNX Runtime sessions (``session``) and the classifier that runs images through one
(``classifier``). Nothing is imported here, so ``harness.model.spec`` loads neither
Numba nor ONNX Runtime."""
