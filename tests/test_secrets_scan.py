"""The suite-wide secrets scan (tests/secrets_scan.py): what it counts as a secret, and that a
leak in any test's output fails the session while a redacted one does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.signing.pki import DevPkiOptions, create_dev_pki
from tests.secrets_scan import SECRET_BODY_MARKER, _find_leaks, _known_secrets

pytest_plugins = ["pytester"]


def test_the_secrets_of_a_dev_pki_are_found(tmp_path: Path) -> None:
    create_dev_pki(tmp_path / "pki", DevPkiOptions(clients=1, bits=2048))
    (tmp_path / "mtls.password").write_text("correct horse battery staple\n")
    secrets = dict(_known_secrets(tmp_path))
    api_keys = sorted(tmp_path.rglob("*.api-key*"))
    assert len(api_keys) == 2
    for path in api_keys:
        assert path.read_text().strip() in secrets.values()
    assert "correct horse battery staple" in secrets.values()
    key = (tmp_path / "pki" / "clients" / "client-1" / "signing.key").read_text()
    lines = [v for what, v in secrets.items() if "client-1/signing.key line" in what]
    assert len(lines) == 3 and all(line in key for line in lines)
    assert not any(line in key.splitlines()[1] for line in lines)  # not the shared header
    assert any("signing.pfx content at" in what for what in secrets)


def test_a_leak_is_named_by_where_it_shows_never_by_its_value() -> None:
    secrets = {"client-1 API key": "k" * 43, "body": SECRET_BODY_MARKER}
    text = "\0\0dcpgw-secrets-scan\0\0test_a (Captured log call)\nkey=" + "k" * 43 + " ok\n"
    assert _find_leaks(text, secrets) == ["client-1 API key in test_a (Captured log call)"]
    assert _find_leaks("key=kkkk...(redacted)", secrets) == []


def test_a_leak_in_any_output_fails_the_session_and_redaction_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The inner session runs in a subprocess from pytester's folder: it finds the `tests`
    # package (the plugin) only with the repository on its path.
    root = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    pytester.makeconftest('pytest_plugins = ["tests.secrets_scan"]\n')
    pytester.makepyfile(
        test_inner="""
        import logging

        def _key(tmp_path, secret):
            (tmp_path / "client.api-key").write_text(secret)
            return secret

        def test_redacted(tmp_path):
            secret = _key(tmp_path, "s3cr3t-api-key-redacted-0123456789")
            logging.getLogger("x").warning("api_key=%s", secret[:4] + "...")

        def test_leaks(tmp_path):
            logging.getLogger("x").warning("api_key=%s", _key(tmp_path, "s3cr3t-api-key-leaks-987"))
        """
    )
    leaking = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    leaking.stdout.fnmatch_lines(["*SECRET LEAKED: *client.api-key in *test_leaks*"])
    assert "test_redacted" not in "\n".join(
        line for line in leaking.outlines if "SECRET LEAKED" in line
    )
    assert leaking.ret == pytest.ExitCode.TESTS_FAILED
    leaking.assert_outcomes(passed=2)  # every test passed: the scan alone failed the run
    quiet = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "redacted")
    quiet.stdout.fnmatch_lines(["secrets scan: * 0 leaks"])
    assert quiet.ret == pytest.ExitCode.OK
