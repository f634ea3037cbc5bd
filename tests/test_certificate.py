"""The DER reader of notAfter agrees with ``cryptography`` and fails cleanly on bad bytes."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from medulla_imaging_exporter.certificate import CertificateError, not_after
from medulla_imaging_exporter.transport import cert_not_after

UTC = dt.UTC
# Around the UTCTime / GeneralizedTime switch (2050), leap days, the ends of both ranges.
DATES = [
    dt.datetime(1950, 1, 1, tzinfo=UTC),
    dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
    dt.datetime(2000, 2, 29, 12, 0, 0, tzinfo=UTC),
    dt.datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC),
    dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
    dt.datetime(2050, 1, 1, tzinfo=UTC),
    dt.datetime(2100, 6, 15, 8, 30, 0, tzinfo=UTC),
    dt.datetime(3000, 1, 1, tzinfo=UTC),
    dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
]


@functools.cache
def _key(kind: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _self_signed(expiry: dt.datetime, kind: str = "ec", version_1: bool = False) -> bytes:
    """A certificate with the given expiry; ``version_1`` drops the optional [0] version."""
    key = _key(kind)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imaging.example")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(1950, 1, 1, tzinfo=UTC))
        .not_valid_after(expiry)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(Encoding.DER)
    return _drop_version(der) if version_1 else der


def _drop_version(der: bytes) -> bytes:
    """The same certificate without its [0] version element (an X.509 v1 certificate)."""
    tbs_at = 4  # both SEQUENCE headers of an RSA certificate have 2 length bytes (0x82)
    assert der[0] == der[tbs_at] == 0x30 and der[1] == der[tbs_at + 1] == 0x82
    version = der[tbs_at + 4 : tbs_at + 4 + 5]
    assert version == b"\xa0\x03\x02\x01\x02"
    tbs_len = int.from_bytes(der[tbs_at + 2 : tbs_at + 4], "big") - 5
    rest = der[tbs_at + 9 :]
    body = b"\x30\x82" + tbs_len.to_bytes(2, "big") + rest
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def _reference(der: bytes) -> float:
    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


@pytest.mark.parametrize("expiry", DATES, ids=lambda d: d.isoformat())
@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_not_after_matches_cryptography(expiry: dt.datetime, kind: str) -> None:
    der = _self_signed(expiry, kind)
    assert not_after(der) == _reference(der) == expiry.timestamp()


def test_generalized_time_is_used_from_2050_and_read() -> None:
    der = _self_signed(dt.datetime(2050, 1, 1, tzinfo=UTC))
    assert b"\x18\x0f20500101000000Z" in der
    assert not_after(der) == dt.datetime(2050, 1, 1, tzinfo=UTC).timestamp()


def test_a_version_1_certificate_without_the_version_element() -> None:
    expiry = dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert not_after(_self_signed(expiry, "rsa", version_1=True)) == expiry.timestamp()


@pytest.mark.parametrize("key_type", [trustme.KeyType.ECDSA, trustme.KeyType.RSA])
def test_trustme_certificates_of_a_ca_and_its_leaves(key_type: trustme.KeyType) -> None:
    ca = trustme.CA(key_type=key_type)
    ders = [ca.cert_pem.bytes()]
    for year in (2030, 2049, 2050, 2077):
        leaf = ca.issue_cert(
            "127.0.0.1", not_after=dt.datetime(year, 3, 4, 5, 6, 7, tzinfo=UTC), key_type=key_type
        )
        ders.append(leaf.cert_chain_pems[0].bytes())
    for pem in ders:
        der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
        assert not_after(der) == _reference(der)


def _with_time(der: bytes, old: bytes, new: bytes) -> bytes:
    assert der.count(old) == 1
    return der.replace(old, new)


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (b"\x17\x0d261122030405+", "malformed time"),  # no Z
        (b"\x17\x0d26112203040aZ", "malformed time"),  # not digits
        (b"\x17\x0d261322030405Z", "time out of range"),  # month 13
        (b"\x17\x0d260230030405Z", "no such day"),  # 30 February
        (b"\x17\x0d261122250405Z", "time out of range"),  # hour 25
        (b"\x04\x0d261122030405Z", "expected notAfter as a time"),  # an OCTET STRING
    ],
)
def test_a_malformed_not_after_is_a_clear_error(new: bytes, message: str) -> None:
    der = _self_signed(dt.datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC))
    bad = _with_time(der, b"\x17\x0d261122030405Z", new)
    with pytest.raises(CertificateError, match=message):
        not_after(bad)
    assert cert_not_after(bad) is None  # what the probe reports: no expiry known


def test_every_truncation_is_a_clear_error() -> None:
    der = _self_signed(dt.datetime(2026, 11, 22, tzinfo=UTC))
    validity_end = der.index(b"261122000000Z") + 13
    for size in range(validity_end):
        with pytest.raises(CertificateError):
            not_after(der[:size])


@pytest.mark.parametrize(
    ("der", "message"),
    [
        (b"", "truncated"),
        (b"\x31\x00", "expected Certificate"),
        (b"\x30\x80\x30\x00", "unsupported length"),  # indefinite length (BER, not DER)
        (b"\x30\x85\x00\x00\x00\x00\x01", "unsupported length"),
        (b"\x30\x05\x30\x03\x02\x01", "overruns"),
        (b"-----BEGIN CERTIFICATE-----", "expected Certificate"),  # PEM, not DER
    ],
)
def test_garbage_is_a_clear_error(der: bytes, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        not_after(der)


@given(st.binary(max_size=64))
def test_any_bytes_give_a_time_or_a_certificate_error(data: bytes) -> None:
    with contextlib.suppress(CertificateError):
        assert isinstance(not_after(data), float)


@given(st.data())
def test_a_corrupted_certificate_gives_a_time_or_a_certificate_error(data: st.DataObject) -> None:
    der = bytearray(_self_signed(dt.datetime(2040, 1, 2, tzinfo=UTC)))
    at = data.draw(st.integers(0, 200))
    der[at] = data.draw(st.integers(0, 255))
    with contextlib.suppress(CertificateError):
        assert isinstance(not_after(bytes(der)), float)
