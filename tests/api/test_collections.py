"""Collection endpoints through HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import LOREM, assert_error, ingest

pytestmark = pytest.mark.integration


def test_collection_lifecycle(client, pdfs_dir: Path):
    assert client.get("/collections").json() == {"collections": [], "default_collection": "default"}
    created = client.post("/collections", json={"name": "handbook"})
    assert created.status_code == 201
    assert created.json()["name"] == "handbook" and created.json()["documents"] == 0
    assert_error(client.post("/collections", json={"name": "handbook"}), 409, "conflict")

    ingest(client, pdfs_dir / LOREM, collection="handbook")
    (info,) = client.get("/collections").json()["collections"]
    assert info["name"] == "handbook" and info["documents"] == 1 and info["chunks"] > 0

    assert client.delete("/collections/handbook").json() == {"deleted": "handbook", "documents": 1}
    assert client.get("/collections").json() == {"collections": [], "default_collection": "default"}
    assert client.get("/documents").json()["total"] == 0


def test_collection_input_errors(client):
    # The name pattern is in the schema, so a bad name is a validation error.
    assert_error(client.post("/collections", json={"name": "bad name!"}), 422, "validation_error")
    assert_error(client.post("/collections", json={"name": ""}), 422, "validation_error")
    assert_error(client.post("/collections", json={}), 422, "validation_error")
    response = client.post(
        "/collections", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "malformed_json")
    assert_error(client.delete("/collections/nope"), 404, "collection_not_found")
