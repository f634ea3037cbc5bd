"""The expiry (notAfter) of an X.509 certificate, read straight from its DER bytes.

Python's ``ssl`` gives the peer certificate's dates only when it verified it, but the
exporter reports the expiry with verification off too, so it reads the DER itself. A
full X.509 library (``cryptography``) costs the exporter 8 MB of resident memory for
these few bytes; the path through the structure is fixed (RFC 5280, section 4.1):

    Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
        serialNumber INTEGER, signature SEQUENCE, issuer SEQUENCE,
        validity SEQUENCE { notBefore Time, notAfter Time }, ... }, ... }
"""

from __future__ import annotations

import calendar

INTEGER = 0x02
SEQUENCE = 0x30
VERSION = 0xA0  # [0] EXPLICIT, context-specific and constructed
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18


class CertificateError(ValueError):
    """The bytes are not a DER certificate whose notAfter this module can read."""


def _element(der: bytes, offset: int) -> tuple[int, int, int]:
    """The tag of the element at ``offset``, where its content starts and where it ends."""
    if offset + 2 > len(der):
        raise CertificateError(f"truncated DER at byte {offset}")
    tag, first = der[offset], der[offset + 1]
    start = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:  # indefinite length is not DER; 4 bytes is 4 GiB
            raise CertificateError(f"unsupported length encoding at byte {offset}")
        if start + count > len(der):
            raise CertificateError(f"truncated length at byte {offset}")
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    end = start + length
    if end > len(der):
        raise CertificateError(f"element at byte {offset} overruns the DER ({end} > {len(der)})")
    return tag, start, end


def _expect(der: bytes, offset: int, tag: int, what: str) -> tuple[int, int]:
    if offset < len(der) and der[offset] != tag:  # before the length: PEM says so clearly
        raise CertificateError(f"expected {what} (tag 0x{tag:02x}), found tag 0x{der[offset]:02x}")
    _, start, end = _element(der, offset)
    return start, end


def _parse_time(tag: int, text: bytes) -> float:
    """UTCTime ``YYMMDDHHMMSSZ`` (years 1950-2049) or GeneralizedTime ``YYYYMMDDHHMMSSZ``."""
    digits = 12 if tag == UTC_TIME else 14
    if len(text) != digits + 1 or not text.endswith(b"Z") or not text[:digits].isdigit():
        raise CertificateError(f"malformed time {text!r}")
    if tag == UTC_TIME:
        year = int(text[:2])
        year += 1900 if year >= 50 else 2000
        rest = text[2:12]
    else:
        year = int(text[:4])
        rest = text[4:14]
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        raise CertificateError(f"time out of range {text!r}")
    if day > calendar.monthrange(year, month)[1]:
        raise CertificateError(f"no such day {text!r}")
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def not_after(der: bytes) -> float:
    """The certificate's notAfter as a Unix timestamp; ``CertificateError`` if unreadable."""
    start, _ = _expect(der, 0, SEQUENCE, "Certificate")
    offset, _ = _expect(der, start, SEQUENCE, "tbsCertificate")
    if _element(der, offset)[0] == VERSION:
        offset = _element(der, offset)[2]
    offset = _expect(der, offset, INTEGER, "serialNumber")[1]
    offset = _expect(der, offset, SEQUENCE, "signature")[1]
    offset = _expect(der, offset, SEQUENCE, "issuer")[1]
    offset, _ = _expect(der, offset, SEQUENCE, "validity")
    offset = _element(der, offset)[2]  # notBefore
    tag, start, end = _element(der, offset)
    if tag not in (UTC_TIME, GENERALIZED_TIME):
        raise CertificateError(f"expected notAfter as a time, found tag 0x{tag:02x}")
    return _parse_time(tag, der[start:end])
