"""Office uploads through HTTP: clear 422s at the door, the password form field decrypts."""

from __future__ import annotations

import pytest

from ingest.sniff import XLSX
from tests.api.conftest import assert_error, ingest, upload, wait_job
from tests.conftest import shared_path

pytestmark = pytest.mark.integration

ENCRYPTED_XLSX = "encrypted_xlsx_testEXCEL_protected_passtika.xlsx"


def test_encrypted_workbook_is_refused_until_the_password_field_is_sent(client) -> None:
    path = shared_path("office", ENCRYPTED_XLSX)
    error = assert_error(upload(client, path), 422, "encrypted_document")
    assert "encrypted" in error["message"] and "'password' form field" in error["message"]
    wrong = assert_error(upload(client, path, data={"password": "nope"}), 422, "encrypted_document")
    assert "password is wrong" in wrong["message"]

    job = ingest(client, path, password="tika")
    assert job["status"] == "succeeded", job
    document = client.get(f"/documents/{job['document_id']}").json()
    assert document["pages"] == 3  # one page per sheet
    assert document["media_type"] == XLSX


def test_truncated_docx_is_refused_as_corrupt(client) -> None:
    path = shared_path("office", "malformed_docx_testWORD_truncated.docx")
    error = assert_error(upload(client, path), 422, "parse_error")
    assert "corrupt or truncated" in error["message"]


def test_a_workbook_named_txt_is_ingested_as_a_workbook(client) -> None:
    path = shared_path("office", "en_xlsx_multisheet_2023-half-year-analyses-by-segment.xlsx")
    response = upload(client, path, names=["numbers.txt"])
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["jobs"][0]["job_id"])
    assert job["status"] == "succeeded", job
    document = client.get(f"/documents/{job['document_id']}").json()
    assert document["media_type"] == XLSX
