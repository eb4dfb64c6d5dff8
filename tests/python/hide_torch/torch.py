"""Shadows the real torch (first on PYTHONPATH) so that ctest can check the skip path of
test_torch_ops.py on a machine that has torch."""
raise ImportError("torch hidden by tests/python/hide_torch")
