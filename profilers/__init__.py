"""Everything that measures: MACs/params, latency (ONNX Runtime, TensorRT), latency tables,
and the on-device agent with its client.

This package's `__init__` imports nothing heavy: the agent must start on a device that has
only a runtime installed, so torch is imported only by the modules that need it.
"""
