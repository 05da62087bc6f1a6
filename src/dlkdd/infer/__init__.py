"""Inference on real footage: model runners (PyTorch checkpoint or ONNX Runtime) and per-video timelines.

Imports only what ``dlkdd predict`` needs (numpy, OpenCV, and torch or onnxruntime on demand), never the pipeline's
packages (DVC, Prefect, Great Expectations, Evidently, matplotlib, OmegaConf).
"""
