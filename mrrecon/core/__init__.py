"""The layer every method, the trainer and the benchmark stand on: the Reconstructor protocol and registry
(``reconstructor``), learned models as config + safetensors folders (``pretrained``, ``weights``), and
reconstructing + scoring one volume (``runner``, ``memory``). It imports physics, data and metrics, never
the methods, training or evaluation above it (tests/test_layers.py)."""
