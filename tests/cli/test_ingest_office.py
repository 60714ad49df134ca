"""`rag ingest` on a folder of Office files: picked up by suffix, typed by bytes, --password."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import shared_path

pytestmark = pytest.mark.integration

FILES = (
    "en_docx_lists-image_word_sample.docx",
    "en_pptx_merged-table-notes_powerpoint_sample.pptx",
    "zh_csv_gbk_example-alipay-records.csv",
    "en_epub3_markitdown-test.epub",
    "encrypted_xlsx_testEXCEL_protected_passtika.xlsx",
)


def _ingest(tmp_path: Path, folder: Path, *flags: str) -> tuple[int, list[dict]]:
    env = {
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_EMBEDDING__MODEL": "hashing:256",
        "RAG_GENERATOR__BACKEND": "extractive",
    }
    result = CliRunner().invoke(app, ["ingest", str(folder), "--json", *flags], env=env)
    return result.exit_code, json.loads(result.stdout)["documents"]


def test_a_folder_of_office_files_is_ingested_and_the_password_opens_the_locked_one(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "office"
    folder.mkdir()
    for name in FILES:
        shutil.copy(shared_path("office", name), folder / name)

    code, documents = _ingest(tmp_path, folder)
    status = {d["filename"]: d["status"] for d in documents}
    assert code == 1 and len(status) == len(FILES)
    locked = next(d for d in documents if d["filename"].startswith("encrypted_"))
    assert locked["status"] == "failed" and "--password" in locked["error"]
    assert all(s == "ready" for n, s in status.items() if not n.startswith("encrypted_"))

    code, documents = _ingest(tmp_path, folder, "--password", "tika")
    assert code == 0
    locked = next(d for d in documents if d["filename"].startswith("encrypted_"))
    assert locked["status"] == "ready" and locked["pages"] == 3
