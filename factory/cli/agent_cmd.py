"""`factory agent`: serve this device's runtime to `factory search/export --target X`.

No torch here: the launcher is imported only when the command runs, and it needs only
onnxruntime (and TensorRT where present) plus fastapi/uvicorn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def agent(
    host: Annotated[
        str,
        typer.Option(help="Address to bind. Loopback by default; any other address needs a token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8765,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the bearer token clients must send "
            "(else $EMF_AGENT_TOKEN). Required to bind a non-loopback address.",
            dir_okay=False,
        ),
    ] = None,
    max_upload_mb: Annotated[
        int, typer.Option(help="Largest ONNX upload accepted, in MiB (bigger ones get 413).")
    ] = 256,
    job_timeout_s: Annotated[
        float,
        typer.Option(help="Device time one profile or engine build may take, in seconds."),
    ] = 300,
) -> None:
    """Run the on-device agent: health, ONNX profiling and TensorRT engine builds over HTTP.

    One job at a time uses the device. Only ONNX is accepted. Stop it with Ctrl-C.
    """
    from profilers.agent_server import serve

    serve(host, port, token_file, max_upload_mb, job_timeout_s)
