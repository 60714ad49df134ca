"""Schemathesis against the app's own OpenAPI schema: the fuzzing probe of issue 14, kept.

Every operation gets a small, derandomized set of generated requests (valid
and invalid ones) checked with every schemathesis check: no 5xx, no status
code or content type the schema does not list, valid data accepted, invalid
data rejected, a correct ``Allow`` header on 405. A bounded stateful run then
chains calls along the links schemathesis infers (create a collection, list
it, delete it...), after which the knowledge base must still be consistent
and no ingest job may have crashed.

The app runs with the hashing embedder and the extractive generator over two
real PDFs, so a run takes about a minute on two cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, is_check_class, load_all_checks
from schemathesis.specs.openapi.checks import negative_data_rejection
from sqlalchemy import select

from api.app import create_app
from rag.db.models import IngestJob
from tests.api.conftest import LOREM, MULTILANG, ingest
from tests.conftest import fast_settings, shared_path
from tests.rag.query.fakes import RecordingGenerator

pytestmark = [pytest.mark.slow, pytest.mark.integration]

_STATEFUL_CHILD = "RAG_SCHEMATHESIS_STATEFUL_CHILD"
load_all_checks()
# Every check schemathesis has, named explicitly so that none is skipped by a default.
ALL_CHECKS = [check for check in CHECKS.get_all() if not is_check_class(check)]
# Exclusions, each with its reason; the one content-dependent rule (an upload
# must be a readable file) is handled by `with_readable_files` instead.
EXCLUDED_CHECKS: list[Any] = []
# POST /documents: negative_data_rejection. A multipart file part is bytes on the
# wire, so a "file" that schemathesis generates as a JSON number or array (its
# negative case) arrives as a readable text file, which the server rightly
# ingests; the negative case cannot be sent. Every other check still runs there.
EXCLUDED_BY_OPERATION: dict[str, list[Any]] = {
    "POST /documents": [negative_data_rejection],
}

_SETTINGS = settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _seeded_app(data_dir: Path) -> Any:
    """A fresh app with two real PDFs ingested (so document routes have something to read).

    A request may name any generator: ``transformers`` would load a model
    (minutes) and ``openai`` has no server here (503, documented), so both are
    a fake that answers at once; the contract under test is the HTTP layer's.
    """
    app = create_app(fast_settings(data_dir))
    services = app.state.rag.services
    for backend in ("transformers", "openai"):
        services.register_generator(backend, RecordingGenerator("A generated answer [1]."))
    pdfs = shared_path("pdfs")
    with TestClient(app) as client:
        for name in (LOREM, MULTILANG):
            assert ingest(client, pdfs / name)["status"] == "succeeded"
    return app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    """The seeded app; afterwards its stores must agree and no job may have crashed."""
    app = _seeded_app(tmp_path / "data")
    yield app
    state = app.state.rag
    state.worker.stop()
    kb = state.services.kb
    assert all(check.consistent for check in kb.check()), kb.check()
    with kb.sessions() as session:
        crashed = session.scalars(
            select(IngestJob.id).where(IngestJob.error_code == "internal_error")
        ).all()
    assert not crashed, f"ingest jobs ended internal_error: {crashed}"
    state.services.close()


@pytest.fixture
def api_schema(app: Any, request: pytest.FixtureRequest) -> Any:
    """The app's schema, served through ASGI (no socket)."""
    # schemathesis' lazy loader reads the private ``Node._nodeid`` that pytest 9
    # no longer has; give it the public node id to rename the test with.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


def with_readable_files(case: Any) -> Any:
    """Give generated uploads text content, so that valid uploads are valid files.

    Whether an upload is accepted depends on its bytes (sniffed type, emptiness,
    encryption), which no JSON Schema can state; random bytes are refused (415,
    422) by design and tests/api/test_documents.py covers those refusals. The
    rest of each generated upload (fields present or missing, names, collection,
    flags) is kept as generated, and invalid (negative) cases are left alone.
    """
    files = case.body.get("files") if isinstance(case.body, dict) else None
    positive = case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE
    if case.operation.path == "/documents" and isinstance(files, list) and positive:
        case.body["files"] = [
            f"Upload {i} of a generated case: ducks have waterproof feathers.".encode()
            for i, _ in enumerate(files)
        ]
    return case


def _excluded(case: Any) -> list[Any]:
    label = f"{case.operation.method.upper()} {case.operation.path}"
    return EXCLUDED_CHECKS + EXCLUDED_BY_OPERATION.get(label, [])


@schema.parametrize()
@_SETTINGS
def test_every_operation_conforms_to_its_schema(case: Any) -> None:
    with_readable_files(case).call_and_validate(checks=ALL_CHECKS, excluded_checks=_excluded(case))


@pytest.mark.skipif(
    os.environ.get(_STATEFUL_CHILD) != "1", reason="runs in its own process (see below)"
)
def test_stateful_sequences_in_this_process(api_schema: Any) -> None:
    """Chains of calls along the inferred links; the ``app`` fixture checks the stores after."""
    # Uploads stay queued: a worker finishing jobs at its own pace would make
    # responses, and so the generated sequences, depend on timing.
    worker = api_schema.app.state.rag.worker
    worker.stop()
    worker.start = lambda: None  # accept() restarts it otherwise
    reembeds = api_schema.app.state.rag.reembeds  # re-embedding jobs wait the same way
    reembeds.stop()
    reembeds._start = lambda: None
    # Re-embedding is left out of the chains: its 202 depends on whether the collection already
    # has a re-embedding queued from an earlier example, so hypothesis' replays of the same
    # choices diverge (FlakyStrategyDefinition: "a bundle that was unexpectedly empty"). The
    # per-operation run above fuzzes the route; tests/api/test_collections.py and the crash
    # test's reembed.* kill points cover its sequences.
    machine = api_schema.exclude(path="/collections/{name}/reembed").as_state_machine()

    class Machine(machine):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            with_readable_files(case)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=ALL_CHECKS, excluded_checks=_excluded(case))

    Machine.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=8,
            derandomize=True,
            deadline=None,
            database=None,
            # No shrinking: replays would draw from a server whose state has moved
            # on (created collections, finished jobs), which hypothesis calls flaky.
            phases=[Phase.explicit, Phase.generate],
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
        )
    )
    # Let the worker finish what was queued, so the fixture's check sees final states.
    del worker.start
    worker.start()
    del reembeds._start
    reembeds._start()
    kb = api_schema.app.state.rag.services.kb
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with kb.sessions() as session:
            active = session.scalars(
                select(IngestJob.id).where(IngestJob.status.in_(("queued", "running")))
            ).first()
        if active is None:
            break
        time.sleep(0.1)
    assert active is None, "ingest jobs still active after 120 s"


def test_stateful_sequences_leave_the_knowledge_base_consistent() -> None:
    """The stateful run, in a fresh interpreter.

    After the per-operation run in the same process, schemathesis' state
    machine draws differently on hypothesis' replays (FlakyStrategyDefinition);
    alone it is deterministic, so it runs alone.
    """
    test = f"{Path(__file__).resolve()}::test_stateful_sequences_in_this_process"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", test],
        env={**os.environ, _STATEFUL_CHILD: "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout, result.stdout[-2000:]
