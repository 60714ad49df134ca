"""Decryption of password-protected .docx/.xlsx/.pptx files (msoffcrypto-tool).

Office stores a protected OOXML package encrypted inside an OLE2 file
("EncryptedPackage" beside "EncryptionInfo"); decrypting it gives back the
ordinary ZIP package, which the format's parser then reads as usual.
"""

from __future__ import annotations

import io
import logging

from rag.errors import EncryptedDocument, ParseError

logger = logging.getLogger(__name__)

_WRONG_PASSWORD = (
    "{name} is an encrypted Office document and the password is wrong: check it and pass "
    "the document's open password with --password or the 'password' form field"
)


def decrypt_ooxml(data: bytes, password: str, filename: str | None = None) -> bytes:
    """The decrypted package of an encrypted Office file.

    Args:
        data: The OLE2 file's bytes.
        password: The document's open password.
        filename: For messages.

    Returns:
        The package's bytes (a ZIP archive for .docx/.xlsx/.pptx).

    Raises:
        EncryptedDocument: the password is wrong.
        ParseError: the file is damaged or uses an encryption msoffcrypto
            cannot read; or msoffcrypto-tool is not installed.
    """
    try:
        import msoffcrypto
        from msoffcrypto.exceptions import DecryptionError, FileFormatError, InvalidKeyError
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ParseError(
            "decrypting Office files needs msoffcrypto-tool: pip install msoffcrypto-tool"
        ) from exc
    name = filename or "the file"
    try:
        office = msoffcrypto.OfficeFile(io.BytesIO(data))
        office.load_key(password=password, verify_password=True)
        out = io.BytesIO()
        office.decrypt(out)
    except InvalidKeyError as exc:
        raise EncryptedDocument(
            _WRONG_PASSWORD.format(name=name), details={"filename": filename}
        ) from exc
    except (DecryptionError, FileFormatError, ValueError, OSError, AssertionError) as exc:
        # msoffcrypto reports a damaged EncryptionInfo in several ways.
        raise ParseError(
            f"{name} is an encrypted Office document that cannot be decrypted "
            f"({type(exc).__name__}: {exc}): it is damaged or uses an unsupported encryption; "
            "save an unprotected copy and upload that",
            details={"filename": filename},
        ) from exc
    logger.debug("decrypted office package bytes=%d", out.tell())
    return out.getvalue()


def office_package(data: bytes, password: str | None, filename: str | None = None) -> bytes:
    """``data`` itself, or its decrypted package when it is an encrypted Office file.

    Raises:
        EncryptedDocument: encrypted and no (right) password.
        ParseError: the encrypted file is damaged.
    """
    from ingest.sniff import encrypted_office, is_encrypted_ooxml

    if not is_encrypted_ooxml(data):
        return data
    if not password:
        raise encrypted_office("Office document (Word, Excel or PowerPoint)", filename)
    return decrypt_ooxml(data, password, filename)
