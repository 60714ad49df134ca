"""The `rag` command contract: flags, --json shapes and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_EMBEDDING__MODEL": "hashing:256",
        "RAG_GENERATOR__BACKEND": "extractive",
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout


def test_ingest_json_and_exit_codes(env, pdfs_dir: Path, tmp_path: Path) -> None:
    good = pdfs_dir / "en_multicolumn_latex-lorem.pdf"
    code, out = run(env, "ingest", str(good), "--json")
    assert code == 0
    data = json.loads(out)
    (doc,) = data["documents"]
    assert {"id", "filename", "status", "pages", "chunks", "error"} <= set(doc)
    assert doc["status"] == "ready" and doc["pages"] == 3 and doc["chunks"] >= 1

    code, out = run(env, "ingest", str(good), "--json")  # already present → still 0
    assert code == 0 and json.loads(out)["documents"][0]["action"] == "existing"

    bad = pdfs_dir / "malformed_empty-0-bytes.pdf"
    code, out = run(env, "ingest", str(good), str(bad), "--json")
    assert code == 1
    docs = json.loads(out)["documents"]
    assert [d["status"] for d in docs] == ["ready", "failed"] and docs[1]["error"]

    code, _ = run(env, "ingest", str(tmp_path / "missing.pdf"))
    assert code == 2
    code, _ = run(env, "ingest", "--bogus-flag", str(good))
    assert code == 2


def test_ingest_folder_recursive_into_collection(env, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Alpha\n\nAlpha particles are helium nuclei.")
    (folder / "sub" / "b.txt").write_text("Beta decay emits an electron.")
    (folder / "skip.bin").write_bytes(b"\0\1")
    code, out = run(env, "ingest", str(folder), "--json", "--collection", "physics")
    assert code == 0 and len(json.loads(out)["documents"]) == 1
    code, out = run(env, "ingest", str(folder), "-r", "--json", "-c", "physics")
    assert code == 0 and len(json.loads(out)["documents"]) == 2

    code, out = run(env, "docs", "list", "--collection", "physics", "--json")
    listing = json.loads(out)
    assert code == 0 and listing["total"] == 2
    assert {d["filename"] for d in listing["documents"]} == {"a.md", "b.txt"}
    doc_id = listing["documents"][0]["id"]

    code, out = run(env, "docs", "show", doc_id, "--json")
    assert code == 0 and json.loads(out)["id"] == doc_id
    code, _ = run(env, "docs", "show", "no-such-id")
    assert code == 1
    code, _ = run(env, "docs", "delete", doc_id)
    assert code == 0
    code, out = run(env, "docs", "list", "--json")
    assert json.loads(out)["total"] == 1

    code, out = run(env, "collections", "list", "--json")
    assert [c["name"] for c in json.loads(out)["collections"]] == ["physics"]
    assert run(env, "collections", "create", "notes")[0] == 0
    assert run(env, "collections", "create", "notes")[0] == 1  # exists
    assert run(env, "collections", "create", "bad name!")[0] == 2
    assert run(env, "collections", "delete", "notes")[0] == 0
    assert run(env, "collections", "delete", "notes")[0] == 1


def test_doctor_reports_and_repairs(env, tmp_path: Path) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text("Photosynthesis turns light into chemical energy in chloroplasts.")
    assert run(env, "ingest", str(doc))[0] == 0
    code, out = run(env, "doctor", "--json")
    assert code == 0 and json.loads(out)["consistent"] is True
    # Corrupt: drop the BM25 index file; a start replays nothing (journal pruned), so doctor
    # must find the gap, and --repair must rebuild it from SQL.
    index_dir = Path(env["RAG_DATA_DIR"]) / "indexes"
    for path in index_dir.rglob("bm25.*.npz"):
        path.unlink()
    code, out = run(env, "doctor", "--json")
    assert code == 1 and json.loads(out)["consistent"] is False
    code, out = run(env, "doctor", "--repair", "--json")
    assert code == 0 and json.loads(out)["consistent"] is True
    assert run(env, "doctor")[0] == 0


def test_ask_json_contract(env, tmp_path: Path) -> None:
    doc = tmp_path / "leave.txt"
    doc.write_text("Full-time employees receive 25 days of paid annual leave per year.")
    assert run(env, "ingest", str(doc))[0] == 0
    code, out = run(env, "ask", "How many days of annual leave?", "--json")
    assert code == 0
    answer = json.loads(out)
    assert "25 days" in answer["answer"]
    citation = answer["citations"][0]
    assert {"document_id", "filename", "page", "chunk_id", "snippet", "score"} <= set(citation)
    assert set(answer["flags"]) >= {"refused", "injection_detected", "fallback_used", "redacted"}
    assert "generation" in answer["timings"]
    code, out = run(env, "ask", "What is the airspeed of an unladen swallow?", "--json")
    assert code == 0 and json.loads(out)["flags"]["refused"] is True
    assert json.loads(out)["citations"] == []
    assert run(env, "ask", "   ", "--json")[0] == 2
    assert run(env, "ask", "x" * 2001)[0] == 2
    assert run(env, "ask", "annual leave", "--generator", "gpt-9")[0] == 2
    assert run(env, "ask", "annual leave", "--collection", "nope")[0] == 1


def test_bootstrap_ingests_the_samples_once(env) -> None:
    from tests.conftest import PROJECT_ROOT

    code, out = run(env, "bootstrap", str(PROJECT_ROOT / "data"))
    assert code == 0 and out.count("created") == 3
    code, out = run(env, "bootstrap", str(PROJECT_ROOT / "data"))
    assert code == 0 and "nothing to bootstrap" in out
    code, out = run(env, "docs", "list", "--json")
    names = {d["filename"] for d in json.loads(out)["documents"]}
    assert names == {"acme-employee-handbook.pdf", "solar-energy-basics.md", "tea-culture-zh.md"}


def test_ingest_reports_a_refused_file_and_stores_nothing(env, pdfs_dir: Path, tmp_path: Path):
    """Issue 14, defect 7: a file refused at the door leaves no row, in the CLI as in the API."""
    picture = tmp_path / "picture.pdf"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    empty = pdfs_dir / "malformed_empty-0-bytes.pdf"
    code, out = run(env, "ingest", str(picture), str(empty), "--json")
    assert code == 1
    data = json.loads(out)
    assert data["failed"] == 2
    for doc in data["documents"]:
        assert doc["action"] == "failed" and doc["status"] == "failed"
        assert doc["id"] is None and doc["error"] and doc["error_code"]
    code, out = run(env, "docs", "list", "--json")
    assert code == 0 and json.loads(out)["total"] == 0


def test_collections_reembed_json_and_exit_codes(env, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "tea.md").write_text("Green tea is steamed or pan-fired soon after picking.")
    (folder / "coffee.md").write_text("Espresso is brewed by forcing hot water through coffee.")
    assert run(env, "ingest", str(folder), "--json", "-c", "drinks")[0] == 0
    code, out = run(env, "collections", "list", "--json")
    (info,) = json.loads(out)["collections"]
    assert (info["embedding_model"], info["embedding_dim"]) == ("hashing-256", 256)

    code, out = run(env, "collections", "reembed", "drinks", "--model", "hashing:32", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["collection"] == "drinks" and result["chunks"] == 2
    assert (result["model"], result["dimension"], result["previous_model"]) == (
        "hashing-32",
        32,
        "hashing-256",
    )
    (info,) = json.loads(run(env, "collections", "list", "--json")[1])["collections"]
    assert (info["embedding_model"], info["embedding_dim"]) == ("hashing-32", 32)

    # Asking uses the collection's model, whatever RAG_EMBEDDING__MODEL says.
    code, out = run(env, "ask", "green tea picking", "--json", "-c", "drinks")
    assert code == 0 and json.loads(out)["citations"][0]["filename"] == "tea.md"
    # Adding with another model would mix vectors: refused, exit 1, nothing stored.
    (folder / "milk.md").write_text("Milk foam tops a cappuccino.")
    code, _ = run(env, "ingest", str(folder / "milk.md"), "--json", "-c", "drinks")
    assert code == 1
    assert json.loads(run(env, "docs", "list", "--json", "-c", "drinks")[1])["total"] == 2
    assert run({**env, "RAG_EMBEDDING__MODEL": "hashing-32"}, "ingest", str(folder))[0] == 0

    assert run(env, "collections", "reembed", "nope", "--model", "hashing:32")[0] == 1
    assert run(env, "collections", "reembed", "drinks", "--model", "./no/such/folder")[0] == 2
    assert run(env, "collections", "reembed", "drinks")[0] == 2  # --model is required
    assert run(env, "doctor", "--json")[0] == 0
