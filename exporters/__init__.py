"""Everything that writes deployable files: ONNX (`onnx_export`), INT8 ONNX, TensorRT engines,
and bundles with their manifests.

Importing the package registers the built-in export formats (`exporters.formats`, light);
import the submodule you need for the rest (`exporters.onnx_export` pulls in torch and
onnxruntime).
"""

from exporters import formats  # noqa: F401  (registers the built-in formats)
