"""Starts the device agent under uvicorn: `python -m profilers.agent_server` or `factory agent`.

Loopback (127.0.0.1) by default. Binding anywhere else needs a bearer token, from
`--token-file` or `$EMF_AGENT_TOKEN`; without one the agent refuses to start. A token on
loopback is optional and enforced when given. No torch in this import path.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import stat
import sys
from pathlib import Path

from profilers.agent_app import AgentConfig, MiB, create_app
from targets.errors import UserError

TOKEN_ENV = "EMF_AGENT_TOKEN"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses; host names other than that are not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token_file: Path | None) -> str | None:
    """The token from the file (first line, stripped), else `$EMF_AGENT_TOKEN`, else None."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV) or None
    path = Path(token_file).expanduser()
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"cannot read token file {path}: {exc.strerror or exc}") from exc
    if not token or len(token.split()) != 1:
        raise UserError(f"token file {path} must hold one non-empty token")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: token file {path} is readable by others (chmod 600)", file=sys.stderr)
    return token


def agent_config(
    host: str,
    token: str | None,
    max_upload_mb: int = 256,
    job_timeout_s: float = 300.0,
) -> AgentConfig:
    """The app's config, refusing what would be unsafe or meaningless."""
    if token is None and not is_loopback(host):
        raise UserError(
            f"refusing to bind {host} without a token: pass --token-file or set ${TOKEN_ENV} "
            f"(only loopback may run without one)"
        )
    if max_upload_mb < 1:
        raise UserError(f"max upload must be >= 1 MiB, not {max_upload_mb}")
    if job_timeout_s <= 0:
        raise UserError(f"job timeout must be > 0 s, not {job_timeout_s}")
    return AgentConfig(token, max_upload_mb * MiB, job_timeout_s)


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another program listens on (or one this user may not bind) with what
    to do; other bind failures are left to the server, which reports them itself."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UserError(f"cannot resolve --host {host}: {exc.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is in use by another program; choose another "
                    "with --port (or stop the agent already running there)"
                ) from None
            if exc.errno == errno.EACCES:
                raise UserError(
                    f"port {port} needs privileges this user lacks; choose one above 1023"
                ) from None


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token_file: Path | None = None,
    max_upload_mb: int = 256,
    job_timeout_s: float = 300.0,
) -> None:
    """Check the settings, then run the agent until interrupted (blocks)."""
    import uvicorn

    if not 0 <= port <= 65535:
        raise UserError(f"port must be in 0..65535, not {port}")
    config = agent_config(host, read_token(token_file), max_upload_mb, job_timeout_s)
    check_port_free(host, port)  # before the banner: a taken port is one line, not a log
    auth = "bearer token required" if config.token else "no token (loopback only)"
    print(f"edge-model-factory agent on http://{host}:{port} ({auth})", file=sys.stderr)
    # One worker process: the device lock lives in this process and serialises every job.
    uvicorn.run(create_app(config), host=host, port=port, workers=1, log_level="info")


def main(argv: list[str] | None = None) -> int:
    """Command line of `python -m profilers.agent_server`; a UserError exits 2 on one line."""
    parser = argparse.ArgumentParser(prog="python -m profilers.agent_server", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port")
    parser.add_argument("--token-file", type=Path, help=f"bearer token file (else ${TOKEN_ENV})")
    parser.add_argument("--max-upload-mb", type=int, default=256, help="upload cap in MiB")
    parser.add_argument("--job-timeout-s", type=float, default=300.0, help="per-job limit (s)")
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, args.token_file, args.max_upload_mb, args.job_timeout_s)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
