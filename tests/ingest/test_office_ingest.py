"""Office files through the whole ingest path: tables found by a question, passwords."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.service import build_ingest_service
from rag.services import Services, build_services
from rag.settings import load_settings
from tests.conftest import fast_settings, shared_path

ENCRYPTED_DOCX = "encrypted_docx_testWORD_protected_passtika.docx"


@pytest.fixture(scope="module")
def office_kb(tmp_path_factory: pytest.TempPathFactory, real_embedder: Any) -> Iterator[Services]:
    """A knowledge base (real embedder) holding three shared office files with tables."""
    settings = load_settings(data_dir=tmp_path_factory.mktemp("office-kb"))
    services = build_services(settings, embedder=real_embedder)
    ingest = build_ingest_service(services)
    for name in (
        "en_docx_lists-image_word_sample.docx",
        "zh_csv_gbk_example-alipay-records.csv",
        "zh_xlsx_multisheet-merged_example-wechat-records.xlsx",
    ):
        outcome = ingest.ingest_path(shared_path("office", name))
        assert outcome.action == "created", outcome
    yield services
    services.kb.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "filename", "header", "cell"),
    [
        (
            "How many calories per portion do berries have?",
            "en_docx_lists-image_word_sample.docx",
            "| Food | Calories per portion |",
            "| Berries | Blueberry, Strawberry, Cranberry | 150 |",
        ),
        (
            "一卡通充值退款了多少钱？",
            "zh_csv_gbk_example-alipay-records.csv",
            "| 交易时间 | 交易分类 | 交易对方 |",
            "| 退款-一卡通充值 | 不计收支 | 50.00 |",
        ),
        (
            "微信转账给房东多少钱？",
            "zh_xlsx_multisheet-merged_example-wechat-records.xlsx",
            "| 交易时间 | 交易类型 | 交易对方 |",
            "| 转账 | 房东 | 转账备注:微信转账 | 支出 |",
        ),
    ],
)
def test_a_question_about_a_table_cell_is_answered_from_a_chunk_with_the_header(
    office_kb: Services, question: str, filename: str, header: str, cell: str
) -> None:
    hit = office_kb.retriever().retrieve(question, top_k=1).hits[0]
    assert hit.filename == filename
    assert header in hit.text, hit.text
    assert cell in hit.text, hit.text


@pytest.mark.unit
def test_encrypted_docx_is_refused_without_its_password_and_ingested_with_it(
    tmp_path: Path,
) -> None:
    services = build_services(fast_settings(tmp_path / "kb"))
    ingest = build_ingest_service(services)
    path = shared_path("office", ENCRYPTED_DOCX)
    refused = ingest.ingest_path(path)
    assert refused.action == "failed"
    assert "encrypted" in (refused.error or "") and "--password" in (refused.error or "")
    assert ingest.ingest_path(path, password="wrong").action == "failed"
    outcome = ingest.ingest_path(path, password="tika")
    assert outcome.action == "created", outcome
    chunks = services.kb.document_chunks(outcome.document_id)
    assert "This is an encrypted Word 2007 File." in " ".join(c.text for c in chunks)
    services.kb.close()
