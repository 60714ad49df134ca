"""Ingest service on real shared PDFs: good files become ready, bad ones fail with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.service import IngestService, build_ingest_service
from rag.services import build_services
from tests.conftest import fast_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def services(tmp_path: Path):
    # OCR off: the scanned PDF is one of the bad files here (tests/ingest/test_ocr.py reads it).
    settings = fast_settings(tmp_path / "kb", ingest={"max_file_mb": 2.0, "ocr": False})
    services = build_services(settings)
    yield services
    services.close()


@pytest.fixture
def service(services) -> IngestService:
    return build_ingest_service(services)


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("scanned_image-only_mineru-small-ocr.pdf", "empty_document", "OCR is off"),
        ("encrypted_libreoffice-writer-password.pdf", "encrypted_document", "password required"),
    ],
)
def test_bad_pdfs_leave_a_failed_row_with_the_reason(
    service, services, pdfs_dir: Path, name: str, code: str, message: str
) -> None:
    outcome = service.ingest_path(pdfs_dir / name)
    assert outcome.action == "failed" and outcome.error_code == code
    assert message in (outcome.error or "")
    doc = services.kb.get_document(outcome.document_id)
    assert doc.status == "failed" and message in (doc.error or "")
    assert doc.chunks == 0
    assert all(c.consistent for c in services.kb.check())


def test_encrypted_pdf_with_password(service, pdfs_dir: Path) -> None:
    outcome = service.ingest_path(
        pdfs_dir / "encrypted_libreoffice-writer-password.pdf", password="openpassword"
    )
    assert outcome.action == "created" and outcome.chunks >= 1


def test_wrong_password_is_reported(service, pdfs_dir: Path) -> None:
    outcome = service.ingest_path(
        pdfs_dir / "encrypted_libreoffice-writer-password.pdf", password="nope"
    )
    assert outcome.error_code == "encrypted_document" and "password" in (outcome.error or "")


def test_oversized_and_unsupported_files(service, services, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"a " * (1024 * 1024 + 10))
    outcome = service.ingest_path(big)
    assert outcome.error_code == "file_too_large" and "RAG_INGEST__MAX_FILE_MB" in outcome.error
    png = service.ingest_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "picture.pdf")
    assert png.error_code == "unsupported_file_type"
    # Refused at the door: reported with no document id, and nothing is stored.
    assert outcome.document_id is None and png.document_id is None
    assert services.kb.list_documents()[0] == []


def test_an_empty_file_is_refused_without_a_row(service, services, pdfs_dir: Path) -> None:
    outcome = service.ingest_path(pdfs_dir / "malformed_empty-0-bytes.pdf")
    assert outcome.action == "failed" and outcome.error_code == "empty_document"
    assert outcome.document_id is None and "empty" in (outcome.error or "")
    assert services.kb.list_documents()[0] == []


def test_corrupt_pdf_recovers_text(service, pdfs_dir: Path) -> None:
    outcome = service.ingest_path(pdfs_dir / "malformed_zen-of-python-corrupted-stream.pdf")
    assert outcome.action == "created" and outcome.chunks >= 1


def test_real_pdf_pages_are_kept_on_chunks(service, services, pdfs_dir: Path) -> None:
    outcome = service.ingest_path(pdfs_dir / "en_academic_tables_tableformer-arxiv2203.00274.pdf")
    assert outcome.pages == 10
    chunks = services.kb.document_chunks(outcome.document_id)
    assert chunks[0].page_start == 1 and chunks[-1].page_end == 10
    assert all(a.page_start <= b.page_start for a, b in zip(chunks, chunks[1:], strict=False))


def test_bulk_path_embeds_once_and_commits_each(service, services) -> None:
    files = [(f"doc{i}.txt", f"Document {i} is about topic {i}.".encode()) for i in range(5)]
    files.append(("empty.txt", b""))
    outcomes = service.ingest_many(files)
    assert [o.action for o in outcomes] == ["created"] * 5 + ["failed"]
    assert services.kb.check()[0].sql_chunks == 5


@pytest.mark.slow
def test_real_embedder_ingests_a_chinese_pdf(tmp_path: Path, pdfs_dir: Path, real_embedder) -> None:
    from rag.knowledge_base import KnowledgeBase
    from rag.settings import load_settings

    kb = KnowledgeBase(load_settings(data_dir=tmp_path / "kb"), real_embedder.name)
    service = IngestService(kb, real_embedder, kb.settings.ingest)
    outcome = service.ingest_path(pdfs_dir / "zh_academic_paper-page.pdf")
    assert outcome.action == "created"
    chunks = kb.document_chunks(outcome.document_id)
    assert all(c.token_count <= 254 for c in chunks)
    assert "洛天依" in "".join(c.text for c in chunks)
    kb.close()
