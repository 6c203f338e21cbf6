"""Everything that writes deployable files: ONNX (`onnx_export`), INT8 ONNX, TensorRT engines,
and bundles with their manifests.

This `__init__` imports nothing: import the submodule you need (`exporters.onnx_export`
pulls in torch and onnxruntime).
"""
