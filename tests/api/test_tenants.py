"""Tenant keys through HTTP: every route tried with no key, a wrong key and another tenant's key.

Tenant A owns ``alpha`` (and may create ``alpha-archive``), tenant B owns
``beta``, and an admin key holds ``hq-ledger``. Every route of the app has a
row in :data:`ROUTE_CASES` (a route without one fails the test), each with
the requests tenant B makes against A's collections, documents, jobs and
chat sessions, and the same kind of request by its rightful key as a control
(so a 404 cannot come from a malformed request). After B's attempts, A's
data must be intact and no response B got may hold anything of A's or the
admin's that B did not send itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.access import get_access
from tests.api.conftest import assert_error, wait_job

pytestmark = pytest.mark.integration

QUESTION = "What is the falcon research budget per year?"
# The three documents answer the same question, so a search that is not
# confined to the caller's collections would find the others' chunks.
TEXTS = {
    "a": "Falcon research budget.\n\nThe alpha team's falcon research budget is 4217 euros "
    "per year, approved by Ingrid Solberg.",
    "b": "Falcon research budget.\n\nThe beta team's falcon research budget is 9385 euros "
    "per year, approved by Tomas Okafor.",
    "admin": "Falcon research budget.\n\nThe ledger's falcon research budget is 5560 euros "
    "per year, approved by Mei Lindqvist.",
}
FILENAMES = {"a": "alpha-budget.txt", "b": "beta-budget.txt", "admin": "ledger-budget.txt"}
A_COLLECTIONS = ["alpha", "alpha-archive"]
B_COLLECTIONS = ["beta"]
ADMIN_COLLECTION = "hq-ledger"

Request = dict[str, Any]


@dataclass
class World:
    """The server, its keys and the things tenant A (and the admin) own."""

    client: TestClient
    keys: dict[str, str]
    a_doc: str = ""
    a_job: str = ""
    a_session: str = ""
    b_doc: str = ""
    admin_doc: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        """The Authorization header of a caller ('none' sends no header)."""
        if who == "none":
            return {}
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def send(self, request: Request, who: str) -> httpx.Response:
        """Send one request as ``who``."""
        options = {k: v for k, v in request.items() if k not in ("method", "url")}
        return self.client.request(
            request["method"], request["url"], headers=self.headers(who), **options
        )

    def secrets_of_others(self) -> list[str]:
        """Strings only tenant A or the admin may ever see."""
        return [
            "alpha",
            ADMIN_COLLECTION,
            self.a_doc,
            self.a_job,
            self.a_session,
            self.admin_doc,
            FILENAMES["a"],
            FILENAMES["admin"],
            "4217",
            "Ingrid",
            "5560",
            "Lindqvist",
        ]


def _text_upload(name: str, text: str, collection: str | None = None) -> Request:
    files = [("files", (name, text.encode(), "text/plain"))]
    data = {"collection": collection} if collection else {}
    return {"method": "POST", "url": "/documents", "files": files, "data": data}


def _get(url: str) -> Request:
    return {"method": "GET", "url": url}


def _delete(url: str) -> Request:
    return {"method": "DELETE", "url": url}


def _post(url: str, body: dict[str, Any]) -> Request:
    return {"method": "POST", "url": url, "json": body}


@dataclass(frozen=True)
class Attempt:
    """One request of tenant B against A's things.

    Attributes:
        request: Builds the request from the world.
        status: What B must get.
        target: The identifier of A's it aims at (its 404 must equal the 404
            of an identifier that never existed).
    """

    request: Callable[[World], Request]
    status: int
    target: Callable[[World], str] | None = None


@dataclass(frozen=True)
class RouteCase:
    """Everything tried on one route."""

    attempts: tuple[Attempt, ...]
    control: Callable[[World], Request]
    control_key: str
    control_status: int
    destructive: bool = False
    # The error code the rightful key gets, where its status alone could read as the scope's 404.
    control_code: str | None = None


def _ask(**extra: Any) -> Callable[[World], Request]:
    return lambda w: _post("/ask", {"question": QUESTION, **extra})


ROUTE_CASES: dict[tuple[str, str], RouteCase] = {
    ("GET", "/healthz"): RouteCase(
        (Attempt(lambda w: _get("/healthz"), 200),), lambda w: _get("/healthz"), "a", 200
    ),
    ("GET", "/readyz"): RouteCase(
        (Attempt(lambda w: _get("/readyz"), 403),), lambda w: _get("/readyz"), "admin", 200
    ),
    ("GET", "/metrics"): RouteCase(
        (Attempt(lambda w: _get("/metrics"), 403),), lambda w: _get("/metrics"), "admin", 200
    ),
    ("GET", "/collections"): RouteCase(
        (Attempt(lambda w: _get("/collections"), 200),), lambda w: _get("/collections"), "a", 200
    ),
    ("POST", "/collections"): RouteCase(
        (
            Attempt(
                lambda w: _post("/collections", {"name": "alpha-archive"}),
                404,
                lambda w: "alpha-archive",
            ),
            Attempt(lambda w: _post("/collections", {"name": "alpha"}), 404, lambda w: "alpha"),
        ),
        lambda w: _post("/collections", {"name": "alpha-archive"}),
        "a",
        201,
    ),
    ("DELETE", "/collections/{name}"): RouteCase(
        (Attempt(lambda w: _delete("/collections/alpha"), 404, lambda w: "alpha"),),
        lambda w: _delete("/collections/alpha-archive"),
        "a",
        200,
        destructive=True,
    ),
    ("POST", "/collections/{name}/reembed"): RouteCase(
        (
            Attempt(
                lambda w: _post("/collections/alpha/reembed", {"model": "hashing:128"}),
                404,
                lambda w: "alpha",
            ),
        ),
        lambda w: _post("/collections/alpha/reembed", {"model": "hashing:128"}),
        "a",
        202,
        destructive=True,  # a background job over the collection: after the other controls
    ),
    ("POST", "/documents"): RouteCase(
        (
            Attempt(
                lambda w: _text_upload("planted.txt", "planted by beta", "alpha"),
                404,
                lambda w: "alpha",
            ),
            Attempt(
                lambda w: _text_upload("planted.txt", "planted by beta", ADMIN_COLLECTION),
                404,
                lambda w: ADMIN_COLLECTION,
            ),
        ),
        lambda w: _text_upload("alpha-notes.txt", "Alpha notes on falcons."),
        "a",
        202,
    ),
    ("GET", "/documents"): RouteCase(
        (
            Attempt(lambda w: _get("/documents"), 200),
            Attempt(lambda w: _get("/documents?collection=alpha"), 404, lambda w: "alpha"),
            Attempt(
                lambda w: _get(f"/documents?collection={ADMIN_COLLECTION}"),
                404,
                lambda w: ADMIN_COLLECTION,
            ),
        ),
        lambda w: _get("/documents"),
        "a",
        200,
    ),
    ("GET", "/documents/{doc_id}"): RouteCase(
        (
            Attempt(lambda w: _get(f"/documents/{w.a_doc}"), 404, lambda w: w.a_doc),
            Attempt(lambda w: _get(f"/documents/{w.admin_doc}"), 404, lambda w: w.admin_doc),
        ),
        lambda w: _get(f"/documents/{w.a_doc}"),
        "a",
        200,
    ),
    ("GET", "/documents/{doc_id}/chunks"): RouteCase(
        (Attempt(lambda w: _get(f"/documents/{w.a_doc}/chunks"), 404, lambda w: w.a_doc),),
        lambda w: _get(f"/documents/{w.a_doc}/chunks"),
        "a",
        200,
    ),
    ("GET", "/documents/{doc_id}/file"): RouteCase(
        (Attempt(lambda w: _get(f"/documents/{w.a_doc}/file"), 404, lambda w: w.a_doc),),
        lambda w: _get(f"/documents/{w.a_doc}/file"),
        "a",
        200,
    ),
    ("GET", "/documents/{doc_id}/pages/{page}"): RouteCase(
        (Attempt(lambda w: _get(f"/documents/{w.a_doc}/pages/1"), 404, lambda w: w.a_doc),),
        lambda w: _get(f"/documents/{w.a_doc}/pages/1"),
        "a",
        200,
    ),
    # A text document has no page image: the owner's page_not_found (not document_not_found)
    # shows the request got past the scope.
    ("GET", "/documents/{doc_id}/pages/{page}.png"): RouteCase(
        (Attempt(lambda w: _get(f"/documents/{w.a_doc}/pages/1.png"), 404, lambda w: w.a_doc),),
        lambda w: _get(f"/documents/{w.a_doc}/pages/1.png"),
        "a",
        404,
        control_code="page_not_found",
    ),
    ("DELETE", "/documents/{doc_id}"): RouteCase(
        (Attempt(lambda w: _delete(f"/documents/{w.a_doc}"), 404, lambda w: w.a_doc),),
        lambda w: _delete(f"/documents/{w.a_doc}"),
        "a",
        200,
        destructive=True,
    ),
    ("GET", "/jobs/{job_id}"): RouteCase(
        (Attempt(lambda w: _get(f"/jobs/{w.a_job}"), 404, lambda w: w.a_job),),
        lambda w: _get(f"/jobs/{w.a_job}"),
        "a",
        200,
    ),
    ("POST", "/ask"): RouteCase(
        (
            Attempt(_ask(), 200),
            Attempt(_ask(stream=True), 200),
            Attempt(_ask(collections=["alpha"]), 404, lambda w: "alpha"),
            Attempt(_ask(collections=["beta", ADMIN_COLLECTION]), 404, lambda w: ADMIN_COLLECTION),
            Attempt(_ask(collections=["alpha"], stream=True), 404, lambda w: "alpha"),
            Attempt(
                lambda w: _post("/ask", {"question": QUESTION, "document_ids": [w.a_doc]}),
                404,
                lambda w: w.a_doc,
            ),
        ),
        _ask(),
        "a",
        200,
    ),
    ("POST", "/chat"): RouteCase(
        (
            Attempt(lambda w: _post("/chat", {"message": QUESTION}), 200),
            Attempt(
                lambda w: _post("/chat", {"message": QUESTION, "session_id": w.a_session}),
                404,
                lambda w: w.a_session,
            ),
            Attempt(
                lambda w: _post(
                    "/chat", {"message": QUESTION, "session_id": w.a_session, "stream": True}
                ),
                404,
                lambda w: w.a_session,
            ),
            Attempt(
                lambda w: _post("/chat", {"message": QUESTION, "collections": ["alpha"]}),
                404,
                lambda w: "alpha",
            ),
        ),
        lambda w: _post("/chat", {"message": QUESTION, "session_id": w.a_session}),
        "a",
        200,
    ),
    ("GET", "/chat/{session_id}"): RouteCase(
        (Attempt(lambda w: _get(f"/chat/{w.a_session}"), 404, lambda w: w.a_session),),
        lambda w: _get(f"/chat/{w.a_session}"),
        "a",
        200,
    ),
    ("DELETE", "/chat/{session_id}"): RouteCase(
        (Attempt(lambda w: _delete(f"/chat/{w.a_session}"), 404, lambda w: w.a_session),),
        lambda w: _delete(f"/chat/{w.a_session}"),
        "a",
        200,
        destructive=True,
    ),
    ("GET", "/v1/models"): RouteCase(
        (Attempt(lambda w: _get("/v1/models"), 200),), lambda w: _get("/v1/models"), "a", 200
    ),
    ("POST", "/v1/chat/completions"): RouteCase(
        (
            Attempt(lambda w: _completion("beta"), 200),
            Attempt(lambda w: _completion("beta", stream=True), 200),
            Attempt(lambda w: _completion("alpha"), 404, lambda w: "alpha"),
            Attempt(lambda w: _completion("alpha", stream=True), 404, lambda w: "alpha"),
            Attempt(lambda w: _completion(ADMIN_COLLECTION), 404, lambda w: ADMIN_COLLECTION),
        ),
        lambda w: _completion("alpha"),
        "a",
        200,
    ),
}

# Routes that are not API operations: the schema and its viewers need a key
# but hold no tenant data; the web page and its assets are public files.
NON_API_ROUTES: dict[str, int] = {
    "/openapi.json": 401,
    "/docs": 401,
    "/docs/oauth2-redirect": 401,
    "/redoc": 401,
    "/": 200,
    "/static/app.js": 200,
}
CALLERS = ("none", "wrong", "b")


def _completion(model: str, *, stream: bool = False) -> Request:
    return _post(
        "/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": QUESTION}], "stream": stream},
    )


def attempts_per_caller() -> int:
    """Requests each caller makes over :data:`ROUTE_CASES` (for the reliability table)."""
    return sum(len(case.attempts) for case in ROUTE_CASES.values())


def _leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Routes of the app, looking inside included routers (kept as one node each)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


def _api_routes(client: TestClient) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in _leaf_routes(client.app.routes)
        if isinstance(route, APIRoute) and route.path not in NON_API_ROUTES
        for method in route.methods
    }


def _depends_on(dependant: Any, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _depends_on(d, call) for d in dependant.dependencies)


@pytest.fixture
def world(make_client: Callable[..., TestClient]) -> World:
    """A server with an admin key and two tenant keys, each with one ingested document."""
    keys = {who: f"{who}-{secrets.token_urlsafe(12)}" for who in ("admin", "a", "b")}
    keys["wrong"] = f"wrong-{secrets.token_urlsafe(12)}"
    client = make_client(
        api={
            "api_keys": [keys["admin"]],
            "key_collections": {keys["a"]: A_COLLECTIONS, keys["b"]: B_COLLECTIONS},
        }
    )
    w = World(client=client, keys=keys)

    def ingest_as(who: str, collection: str | None = None) -> dict[str, Any]:
        response = w.send(_text_upload(FILENAMES[who], TEXTS[who], collection), who)
        assert response.status_code == 202, response.text
        job_id = response.json()["jobs"][0]["job_id"]
        # wait_job sends no key: poll with the owner's key instead.
        polling = TestClient(client.app, headers=w.headers(who))
        job = wait_job(polling, job_id)
        assert job["status"] == "succeeded", job
        return job

    job = ingest_as("a")  # no collection named: tenant A's first, "alpha"
    assert job["collection"] == "alpha"
    w.a_doc, w.a_job = job["document_id"], job["id"]
    w.b_doc = ingest_as("b")["document_id"]
    w.admin_doc = ingest_as("admin", ADMIN_COLLECTION)["document_id"]
    started = w.send(_post("/chat", {"message": QUESTION}), "a")
    assert started.status_code == 200, started.text
    w.a_session = started.json()["session_id"]
    return w


def _snapshot(w: World) -> dict[str, Any]:
    """What the admin sees of everything tenant B must not change."""
    admin = "admin"
    return {
        "collections": sorted(
            (c["name"], c["documents"], c["chunks"])
            for c in w.send(_get("/collections"), admin).json()["collections"]
        ),
        "documents": sorted(
            (d["id"], d["collection"], d["status"])
            for d in w.send(_get("/documents?limit=1000"), admin).json()["documents"]
        ),
        "a_chat": w.send(_get(f"/chat/{w.a_session}"), admin).json(),
        "a_job": w.send(_get(f"/jobs/{w.a_job}"), admin).json()["status"],
    }


def _twin(value: Any, target: str, stand_in: str) -> Any:
    """The same request aimed at ``stand_in``, an identifier that never existed."""
    if isinstance(value, str):
        return value.replace(target, stand_in)
    if isinstance(value, dict):
        return {k: _twin(v, target, stand_in) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_twin(v, target, stand_in) for v in value)
    return value


def _stand_in(target: str) -> str:
    return secrets.token_hex(16) if len(target) == 32 else f"zz-{secrets.token_hex(4)}"


def test_every_route_has_a_case_and_takes_the_access_dependency(world: World) -> None:
    routes = _api_routes(world.client)
    missing = routes - set(ROUTE_CASES)
    assert not missing, f"add a row to ROUTE_CASES for {sorted(missing)}"
    assert not set(ROUTE_CASES) - routes, "ROUTE_CASES names routes the app no longer has"
    for route in _leaf_routes(world.client.app.routes):
        if isinstance(route, APIRoute) and route.path not in ("/healthz", *NON_API_ROUTES):
            assert _depends_on(route.dependant, get_access), (
                f"{route.path} does not depend on api.access.get_access"
            )
    others = {getattr(r, "path", "") for r in _leaf_routes(world.client.app.routes)} - {
        path for _, path in routes
    }
    assert others - {"/static"} <= set(NON_API_ROUTES), others
    for path, status in NON_API_ROUTES.items():
        for who in CALLERS:
            response = world.send(_get(path), who)
            assert response.status_code == (200 if who == "b" else status), (who, path)
            assert not [s for s in world.secrets_of_others() if s and s in response.text]


def test_no_key_wrong_key_and_another_tenant_reach_nothing(world: World) -> None:
    before = _snapshot(world)
    forbidden = [s for s in world.secrets_of_others() if s]
    tried = 0
    for (method, path), case in ROUTE_CASES.items():
        for attempt in case.attempts:
            request = attempt.request(world)
            sent = repr(request)
            for who in CALLERS:
                response = world.send(request, who)
                tried += 1
                label = f"{who}: {method} {request['url']} {request.get('json', '')}"
                leaked = [s for s in forbidden if s in response.text and s not in sent]
                assert not leaked, f"{label} leaked {leaked}: {response.text[:500]}"
                if who != "b" and path != "/healthz":
                    assert_error(response, 401, "unauthorized")
                    continue
                assert response.status_code == attempt.status, f"{label}: {response.text}"
                if attempt.target is not None and who == "b":
                    target = attempt.target(world)
                    stand_in = _stand_in(target)
                    twin = world.send(_twin(request, target, stand_in), who)
                    assert twin.status_code == response.status_code, label
                    assert twin.text.replace(stand_in, "<id>") == response.text.replace(
                        target, "<id>"
                    ), f"{label}: a foreign {target!r} answers unlike an unknown one"
    assert tried == attempts_per_caller() * len(CALLERS)
    # 0 cross-tenant writes: everything A and the admin own is as it was.
    assert _snapshot(world) == before


def test_each_route_works_for_its_rightful_key(world: World) -> None:
    cases = sorted(ROUTE_CASES.items(), key=lambda item: item[1].destructive)
    for (method, path), case in cases:
        response = world.send(case.control(world), case.control_key)
        assert response.status_code == case.control_status, (
            f"{case.control_key}: {method} {path}: {response.text[:300]}"
        )
        if case.control_code is not None:
            assert response.json()["error"]["code"] == case.control_code, response.text[:300]


def test_searches_with_no_collection_named_stay_in_the_tenants_collections(world: World) -> None:
    for who, own_doc, own_figure in (("a", world.a_doc, "4217"), ("b", world.b_doc, "9385")):
        answer = world.send(_ask()(world), who).json()
        cited = {c["document_id"] for c in answer["citations"]}
        assert cited == {own_doc}, (who, answer)
        assert own_figure in answer["answer"], answer
        stream = world.send(_ask(stream=True)(world), who)
        assert own_figure in stream.text
        chat = world.send(_post("/chat", {"message": QUESTION}), who).json()
        assert {c["document_id"] for c in chat["citations"]} == {own_doc}
    # The admin key reaches every tenant's collections.
    answer = world.send(_ask(collections=["beta"])(world), "admin").json()
    assert {c["document_id"] for c in answer["citations"]} == {world.b_doc}


def test_lists_show_only_the_keys_collections(world: World) -> None:
    listed = world.send(_get("/collections"), "b").json()
    assert [c["name"] for c in listed["collections"]] == ["beta"]
    assert listed["default_collection"] == "beta"
    models = world.send(_get("/v1/models"), "b").json()
    assert [m["id"] for m in models["data"]] == ["beta"]
    docs = world.send(_get("/documents"), "b").json()
    assert [d["id"] for d in docs["documents"]] == [world.b_doc] and docs["total"] == 1
    admin = world.send(_get("/collections"), "admin").json()
    assert {c["name"] for c in admin["collections"]} == {"alpha", "beta", ADMIN_COLLECTION}
    assert admin["default_collection"] == "default"
    # The tenant's own sessions: a new one is tied to the key's collections.
    session = world.send(_post("/chat", {"message": QUESTION}), "b").json()["session_id"]
    assert world.send(_get(f"/chat/{session}"), "b").status_code == 200
    assert_error(world.send(_get(f"/chat/{session}"), "a"), 404, "chat_not_found")
    assert world.send(_get(f"/chat/{session}"), "admin").status_code == 200


def test_a_tenant_lists_its_documents_across_its_collections_in_pages(world: World) -> None:
    uploaded = []
    for n, collection in enumerate(["alpha-archive", "alpha", "alpha-archive"]):
        response = world.send(_text_upload(f"page-{n}.txt", f"Page test {n}.", collection), "a")
        uploaded.append(response.json()["jobs"][0]["job_id"])
    polling = TestClient(world.client.app, headers=world.headers("a"))
    for job_id in uploaded:
        assert wait_job(polling, job_id)["status"] == "succeeded"
    everything = world.send(_get("/documents?limit=1000"), "a").json()
    assert everything["total"] == 4
    assert {d["collection"] for d in everything["documents"]} == {"alpha", "alpha-archive"}
    ids = [d["id"] for d in everything["documents"]]
    paged = [
        d["id"]
        for offset in range(0, 4, 3)
        for d in world.send(_get(f"/documents?offset={offset}&limit=3"), "a").json()["documents"]
    ]
    assert paged == ids
    admin_order = [
        d["id"]
        for d in world.send(_get("/documents?limit=1000"), "admin").json()["documents"]
        if d["collection"].startswith("alpha")
    ]
    assert admin_order == ids


def test_a_tenant_without_any_existing_collection_searches_nothing(
    make_client: Callable[..., TestClient],
) -> None:
    admin, tenant = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    client = make_client(api={"api_keys": [admin], "key_collections": {tenant: ["empty"]}})
    response = client.post(
        "/documents",
        files=[("files", ("x.txt", b"Falcon research budget is 1234 euros.", "text/plain"))],
        data={"collection": "other"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert response.status_code == 202
    polling = TestClient(client.app, headers={"Authorization": f"Bearer {admin}"})
    wait_job(polling, response.json()["jobs"][0]["job_id"])
    asked = client.post(
        "/ask", json={"question": QUESTION}, headers={"Authorization": f"Bearer {tenant}"}
    )
    error = assert_error(asked, 404, "collection_not_found")
    assert "1234" not in asked.text and "upload a document" in error["message"]


def test_settings_refuse_a_key_that_is_both_admin_and_tenant() -> None:
    from pydantic import ValidationError

    from rag.settings import load_settings

    with pytest.raises(ValidationError, match="in both api_keys"):
        load_settings(api={"api_keys": ["same"], "key_collections": {"same": ["a"]}})
    with pytest.raises(ValidationError, match="lists no collection"):
        load_settings(api={"key_collections": {"k": []}})
    with pytest.raises(ValidationError, match="names '../etc'"):
        load_settings(api={"key_collections": {"k": ["../etc"]}})
