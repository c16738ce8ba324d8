"""Salience over ONNX models: black-box perturbation (occlusion, RISE) and class
activation maps read from the graph (CAM).

``methods.METHODS`` declares each method once. Nothing is imported here, so reading the
registry loads no kernel; the functions are ``harness.occlusion``, ``harness.rise`` and
``harness.cam`` (or this package's modules of the same names).
"""
