"""The agent fuzzed from its own OpenAPI document (schemathesis, every check).

Two tiers: about 200 requests in the default run, at least 2,000 with `-m slow`. Goals: no
5xx except the documented 501 of /engine where TensorRT is missing, no crash, /health
alive after every request, and nothing written outside the temporary area (the working
directory and the temp directory end as they began). Counts go to docs/agent_fuzz.md
(`python bench/agent_fuzz.py` re-records them).
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from profilers.agent_app import AgentConfig, create_app

with warnings.catch_warnings():  # starlette nags about httpx vs httpx2 at import
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

TOKEN = "fuzz-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP = create_app(AgentConfig(token=TOKEN, max_upload_bytes=64 * 1024, job_timeout_s=60))
# Any bytes fit `format: binary`, but only an ONNX model is accepted: OpenAPI cannot say
# that, so a schema-valid body may be refused with 400 (or 413 over the cap); and /engine
# answers its documented 501 where TensorRT is missing.
CONFIG = SchemathesisConfig.from_str(
    '[checks]\npositive_data_acceptance.expected-statuses = ["2xx", "400", "413", "501"]\n'
)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG, headers=AUTH)
# Examples per operation; with schemathesis's extra probes (other methods, missing auth)
# 30 made 297 requests here and 350 made 1,257: 20 makes about 200, 700 over 2,000.
DEFAULT_PER_OPERATION = 20
SLOW_PER_OPERATION = 700
STATUSES: Counter[tuple[str, int]] = Counter()


def _no_server_error_but_a_missing_tensorrt(ctx, response, case) -> None:
    """schemathesis's `not_a_server_error`, allowing the documented 501 of /engine."""
    status = response.status_code
    if status >= 500 and not (case.path == "/engine" and status == 501):
        raise AssertionError(f"{case.method} {case.path}: {status} {response.text[:300]}")


def fuzz_one(case, client: TestClient) -> None:
    """One generated request with every check, then /health must answer."""
    from schemathesis.checks import not_a_server_error

    response = case.call_and_validate(
        headers=AUTH,
        excluded_checks=[not_a_server_error],
        additional_checks=[_no_server_error_but_a_missing_tensorrt],
    )
    STATUSES[(f"{case.method} {case.path}", response.status_code)] += 1
    assert client.get("/health", headers=AUTH).status_code == 200


@pytest.fixture(scope="module")
def client():
    with TestClient(APP) as c:
        yield c


@pytest.fixture(scope="module", autouse=True)
def _sealed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Work in an empty directory with an empty temp directory; both must stay empty."""
    import os
    import tempfile

    here, tmp = tmp_path_factory.mktemp("cwd"), tmp_path_factory.mktemp("tmp")
    before, old_tmp = Path.cwd(), tempfile.tempdir
    os.chdir(here)
    tempfile.tempdir = str(tmp)
    yield
    os.chdir(before)
    tempfile.tempdir = old_tmp
    assert not any(here.iterdir()), f"the agent wrote {sorted(here.iterdir())}"
    assert not any(tmp.iterdir()), f"the agent left {sorted(tmp.iterdir())}"
    if report := os.environ.get("EMF_FUZZ_REPORT"):  # bench/agent_fuzz.py reads this
        rows = [{"request": r, "status": s, "count": n} for (r, s), n in sorted(STATUSES.items())]
        Path(report).write_text(json.dumps(rows, indent=1))


_FAST = settings(
    max_examples=DEFAULT_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
_LONG = settings(_FAST, max_examples=SLOW_PER_OPERATION)


@SCHEMA.parametrize()
@_FAST
def test_fuzz_default_tier(case, client) -> None:
    fuzz_one(case, client)


@pytest.mark.slow
@SCHEMA.parametrize()
@_LONG
def test_fuzz_slow_tier(case, client) -> None:
    fuzz_one(case, client)


def test_the_schema_documents_every_status_and_the_onnx_body(client) -> None:
    doc = client.get("/openapi.json", headers=AUTH).json()
    for path, method in (("/profile", "post"), ("/engine", "post")):
        op = doc["paths"][path][method]
        assert "application/octet-stream" in op["requestBody"]["content"]
        assert {"400", "401", "413"} <= set(op["responses"]) and "422" not in op["responses"]
    assert "501" in doc["paths"]["/engine"]["post"]["responses"]
    assert client.get("/openapi.json").status_code == 401  # behind the token like the rest
