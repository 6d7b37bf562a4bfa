"""Signing keys: loaded from files, raw bytes, OpenSSH lines and environment variables;
encrypted keys; bad keys and their errors; new key pairs; wrong keys."""

from __future__ import annotations

import dataclasses
import os
import pickle
import stat
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from _signing_helpers import finished_result, pem_of
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from logosq_os_scheduler import InvalidConfigError, SchedulerError
from logosq_os_scheduler.security import (
    ResultSigner,
    ResultVerificationError,
    SigningKeyError,
    check_result,
    generate_key_pair,
    key_fingerprint,
    load_private_key,
    load_public_key,
    verify_result,
)

pytestmark = pytest.mark.security


def test_a_wrong_key_fails(signer: ResultSigner) -> None:
    record = signer.sign_result(finished_result(1))
    stranger = ed25519.Ed25519PrivateKey.generate()
    assert not verify_result(record, stranger.public_key())
    with pytest.raises(ResultVerificationError, match="names signing key"):
        check_result(record, stranger.public_key())
    # Claiming the stranger's key id does not help: the signature is still the signer's.
    claimed = dataclasses.replace(record, key_id=key_fingerprint(stranger.public_key()))
    assert not verify_result(claimed, stranger.public_key())
    assert verify_result(record, signer)


def test_keys_load_from_files(tmp_path: Path) -> None:
    private_path, public_path = generate_key_pair(tmp_path / "signing.pem")
    assert public_path == tmp_path / "signing.pem.pub"
    assert stat.S_IMODE(os.stat(private_path).st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private_path.read_bytes()
    assert b"BEGIN PUBLIC KEY" in public_path.read_bytes()

    for source in (private_path, str(private_path)):
        signer = ResultSigner(source)
        record = signer.sign_result(finished_result(1))
        assert verify_result(record, public_path)
        assert verify_result(record, str(public_path))
        assert verify_result(record, public_path.read_bytes())
        assert verify_result(record, signer.public_key_pem())

    # Raw 32-byte keys and OpenSSH public keys load too.
    key = load_private_key(private_path)
    raw = tmp_path / "raw.key"
    raw.write_bytes(
        key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )
    raw.chmod(0o600)
    record = ResultSigner(raw).sign_result(finished_result(2))
    ssh_line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert verify_result(record, ssh_line)
    assert verify_result(record, load_public_key(ssh_line.decode()))


def test_encrypted_keys_need_their_password(tmp_path: Path) -> None:
    private_path, public_path = generate_key_pair(tmp_path / "k.pem", password="s3cret")
    with pytest.raises(SigningKeyError, match="not a readable private key"):
        ResultSigner(private_path)
    with pytest.raises(SigningKeyError):
        ResultSigner(private_path, password=b"wrong")
    signer = ResultSigner(private_path, password="s3cret")
    assert verify_result(signer.sign_result(finished_result(1)), public_path)


def test_keys_load_from_an_environment_variable(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = pem_of(key).decode()
    monkeypatch.setenv("LOGOSQ_SIGNING_KEY", pem)
    assert ResultSigner.from_env().key_id == key_fingerprint(key.public_key())
    # Once loaded, the key leaves the environment: processes started later do not inherit it.
    assert "LOGOSQ_SIGNING_KEY" not in os.environ
    # Env files cannot hold newlines: escaped ones are read as newlines.
    monkeypatch.setenv("LOGOSQ_SIGNING_KEY", pem.replace("\n", "\\n"))
    assert ResultSigner.from_env(unset=False).key_id == key_fingerprint(key.public_key())
    assert os.environ["LOGOSQ_SIGNING_KEY"] == pem.replace("\n", "\\n")
    path = tmp_path / "key.pem"
    path.write_text(pem)
    path.chmod(0o600)
    monkeypatch.setenv("OTHER_KEY_VAR", str(path))
    assert ResultSigner.from_env("OTHER_KEY_VAR").key_id == key_fingerprint(key.public_key())

    monkeypatch.delenv("LOGOSQ_SIGNING_KEY")
    with pytest.raises(SigningKeyError, match="LOGOSQ_SIGNING_KEY is not set"):
        ResultSigner.from_env()
    monkeypatch.setenv("LOGOSQ_SIGNING_KEY", "   ")
    with pytest.raises(SigningKeyError, match="LOGOSQ_SIGNING_KEY is not set"):
        ResultSigner.from_env()
    monkeypatch.setenv("LOGOSQ_SIGNING_KEY", str(tmp_path / "missing.pem"))
    with pytest.raises(SigningKeyError, match="from environment variable LOGOSQ_SIGNING_KEY"):
        ResultSigner.from_env()


def test_bad_keys_give_a_clear_error(tmp_path: Path, key: ed25519.Ed25519PrivateKey) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(
        b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n"
    )
    rsa_path = tmp_path / "rsa.pem"
    rsa_path.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cases: list[tuple[object, str]] = [
        (tmp_path / "missing.pem", "no key file at"),
        (tmp_path, "not a regular file"),
        (garbage, "not a readable private key"),
        (rsa_path, "holds a RSAPrivateKey; result signing uses Ed25519"),
        (public_pem, "not a private key"),
        (b"\x01" * 31, "not a readable private key"),
        (12345, "expected an Ed25519 private key"),
        ("bad\x00path", "cannot read key file"),
    ]
    for source, message in cases:
        with pytest.raises(SigningKeyError, match=message) as info:
            ResultSigner(source)  # type: ignore[arg-type]
        assert isinstance(info.value, InvalidConfigError)
        assert isinstance(info.value, SchedulerError)
        assert info.value.setting == "signing_key"

    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * 100_000)
    with pytest.raises(SigningKeyError, match="too large"):
        load_private_key(big)
    # A private key where a public one belongs is refused, not silently accepted.
    with pytest.raises(SigningKeyError, match="is a private key"):
        load_public_key(pem_of(key))
    with pytest.raises(SigningKeyError, match="not a readable public key"):
        load_public_key(b"\x02" * 40)
    # A malformed key is the caller's mistake: verify_result raises instead of saying False.
    record = ResultSigner(key).sign_result(finished_result(1))
    with pytest.raises(SigningKeyError):
        verify_result(record, garbage)


def test_error_messages_never_contain_the_key(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey
) -> None:
    pem = pem_of(key)
    body = pem.decode().splitlines()[1]
    with pytest.raises(SigningKeyError) as info:
        ResultSigner(pem, password="unneeded-but-given")
    assert body not in str(info.value)
    signer = ResultSigner(key)
    assert body not in repr(signer)
    assert repr(signer) == f"<ResultSigner {signer.key_id}>"


def test_a_world_readable_private_key_file_is_warned_about(
    tmp_path: Path, key: ed25519.Ed25519PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "open.pem"
    path.write_bytes(pem_of(key))
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="logosq_os_scheduler.security"):
        ResultSigner(path)
    assert any("chmod 600" in r.getMessage() for r in caplog.records)


def test_generate_key_pair_never_overwrites_unless_asked(tmp_path: Path) -> None:
    first, _ = generate_key_pair(tmp_path / "k")
    old = first.read_bytes()
    with pytest.raises(SigningKeyError, match="exists; pass overwrite=True"):
        generate_key_pair(tmp_path / "k")
    assert first.read_bytes() == old
    generate_key_pair(tmp_path / "k", overwrite=True)
    assert first.read_bytes() != old
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    with pytest.raises(SigningKeyError, match="cannot create key file"):
        generate_key_pair(tmp_path / "no-such-dir" / "k")


def test_a_signer_is_never_pickled(signer: ResultSigner) -> None:
    with pytest.raises(SigningKeyError, match="never pickled"):
        pickle.dumps(signer)
