"""The agent's OpenAPI document: every status each endpoint can answer, the raw ONNX request
body, and the bearer token, so a client generator or a fuzzer (schemathesis) can use it.

FastAPI derives paths and query parameters from the app; this module adds what it cannot
see: bodies read from the raw stream, statuses raised as HTTPException, the security scheme.
Served at `GET /openapi.json`, behind the token like every other endpoint.
"""

from __future__ import annotations

from typing import Any

_ERROR = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            }
        }
    }
}
_ONNX_BODY = {
    "required": True,
    "description": "The ONNX model's bytes (no external tensor data), up to the upload cap.",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
_OBJECT = {"content": {"application/json": {"schema": {"type": "object"}}}}
_WHY = {
    "400": "Bad query, empty body, not a valid ONNX model, external data, or settings the "
    "runtime refuses.",
    "401": "Missing or wrong bearer token (only when the agent has one).",
    "413": "The upload exceeds the agent's cap (`max_upload_bytes` in /health).",
    "500": "The runtime failed on a model that passed onnx.checker.",
    "501": "This agent cannot build TensorRT engines (no TensorRT or no GPU).",
    "503": "The device stayed busy for longer than the job limit.",
    "504": "The job ran past the agent's job limit (the device stays reserved until it ends).",
}
STATUSES: dict[str, tuple[str, ...]] = {
    "/health": ("401",),
    "/openapi.json": ("401",),
    "/profile": ("400", "401", "413", "500", "503", "504"),
    "/engine": ("400", "401", "413", "500", "501", "503", "504"),
}


def complete(schema: dict[str, Any], token: bool) -> dict[str, Any]:
    """`schema` (FastAPI's) with the bodies, statuses and security it cannot infer."""
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # validation errors are answered 400
            for status in STATUSES.get(path, ()):
                responses[status] = {"description": _WHY[status], **_ERROR}
            if path in ("/profile", "/engine"):
                operation["requestBody"] = _ONNX_BODY
            if path == "/engine":
                responses["200"] = {
                    "description": "The serialized TensorRT engine.",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                }
            else:
                responses["200"] = {"description": "OK", **_OBJECT}
            if token:
                operation["security"] = [{"bearer": []}]
    schemas = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if token:
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}
        }
    return schema
