"""glimpse/keys.py, the api_key_hashes setting, and `glimpse keys new|hash`."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
from pydantic import ValidationError

from cli.main import main
from glimpse.keys import KEY_PREFIX, hash_key, key_id, new_key, parse_digests
from glimpse.settings import Settings

A = hashlib.sha256(b"gk_a").hexdigest()
B = hashlib.sha256(b"gk_b").hexdigest()


def test_new_keys_are_256_random_bits_and_hash_to_sha256() -> None:
    keys = {new_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key[len(KEY_PREFIX) :])  # 32 bytes, base64url
        assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert hash_key("  gk_a\n") == A  # what a terminal or a file adds is not part of the key
    assert key_id(A) == A[:16]


@pytest.mark.parametrize(
    "raw",
    [f"{A},{B}", f" {A} , {B.upper()} ", f"{A}\n{B}", f'["{A}", "{B}"]', [A, B], f"{A},{B},{A}"],
)
def test_digests_parse_from_commas_json_or_a_list(raw: object) -> None:
    assert parse_digests(raw) == [A, B]


def test_no_digests_means_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLIMPSE_API_KEY_HASHES", raising=False)
    assert parse_digests("") == parse_digests(" ") == parse_digests(None) == []
    assert Settings().api_key_hashes == []


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIMPSE_API_KEY_HASHES", f"{A},{B}")
    monkeypatch.setenv("GLIMPSE_RATE_LIMIT_PER_MINUTE", "0")
    settings = Settings()
    assert settings.api_key_hashes == [A, B]
    assert settings.rate_limit_per_minute == 0
    monkeypatch.setenv("GLIMPSE_API_KEY_HASHES", f'["{B}"]')
    assert Settings().api_key_hashes == [B]
    monkeypatch.delenv("GLIMPSE_RATE_LIMIT_PER_MINUTE")
    assert Settings().rate_limit_per_minute == 120


@pytest.mark.parametrize("bad", ["gk_a-key-in-clear", f"{A},{A[:-1]}", "[1, 2", A + "0"])
def test_a_key_in_clear_or_a_bad_digest_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("GLIMPSE_API_KEY_HASHES", bad)
    with pytest.raises(ValidationError) as refused:
        Settings()
    text = str(refused.value)
    assert "api_key_hashes" in text
    assert bad not in text and "gk_a" not in text


def test_a_negative_rate_limit_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(rate_limit_per_minute=-1)


def test_keys_new_prints_a_key_and_its_digest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new"]) == 0
    out = capsys.readouterr()
    fields = dict(line.split(":", 1) for line in out.out.splitlines())
    key, digest = fields["key"].strip(), fields["sha256"].strip()
    assert key.startswith(KEY_PREFIX) and digest == hash_key(key)
    assert fields["id"].strip() == key_id(digest)
    assert "GLIMPSE_API_KEY_HASHES" in out.err
    assert Settings(api_key_hashes=digest).api_key_hashes == [digest]


def test_keys_hash_from_the_argument_or_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["keys", "hash", "gk_a"]) == 0
    assert capsys.readouterr().out == A + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("gk_b\n"))
    assert main(["keys", "hash"]) == 0
    assert capsys.readouterr().out == B + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["keys", "hash", "-"]) == 2
    assert "no key given" in capsys.readouterr().err
