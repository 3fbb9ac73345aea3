"""Hot reload: rotated certificates and API keys are picked up without a restart, a broken
rotation never replaces a working credential, and Kubernetes' atomic ``..data`` symlink swap
(how Secret volumes update) is seen as a change.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.signing.credentials import CredentialError
from gateway.signing.keystore import DipIdSpec, KeyStore, SignerSpec, UnknownSender
from gateway.signing.pki import Issued, pfx_bytes
from tests import pki_fixtures
from tests.pki_fixtures import Pki

pki = pki_fixtures.pki  # the session fixture, used by name below

DIP_ID = "1400010001"


def _replace(path: Path, data: bytes) -> None:
    """Write beside, then rename over: how deploy tools and editors replace files."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _subject(issued: Issued) -> str:
    return issued.cert.subject.rfc4514_string()


@pytest.fixture()
def files(pki: Pki, tmp_path: Path) -> tuple[Path, Path, Path]:
    pfx = tmp_path / "signing.pfx"
    pfx.write_bytes(pfx_bytes(pki.signer.key, pki.signer.cert))
    primary = tmp_path / "api-key"
    primary.write_text("primary-key-1\n")
    secondary = tmp_path / "api-key.secondary"
    secondary.write_text("secondary-key-1\n")
    return pfx, primary, secondary


def _store(files: tuple[Path, Path, Path]) -> KeyStore:
    pfx, primary, secondary = files
    return KeyStore([SignerSpec("mp", pfx)], [DipIdSpec(DIP_ID, "mp", primary, secondary)])


def test_lookups(pki: Pki, files: tuple[Path, Path, Path]) -> None:
    store = _store(files)
    assert store.signer_for(DIP_ID).subject == _subject(pki.signer)
    assert store.api_keys_for(DIP_ID) == ("primary-key-1", "secondary-key-1")
    assert store.api_key_for(DIP_ID) == "primary-key-1"
    assert store.owns(DIP_ID)
    assert not store.owns("1999999999")
    with pytest.raises(UnknownSender):
        store.signer_for("1999999999")
    with pytest.raises(UnknownSender):
        store.api_keys_for("1999999999")


def test_unchanged_files_do_not_reload(files: tuple[Path, Path, Path]) -> None:
    store = _store(files)
    assert store.reload_if_changed() == []


def test_replaced_pfx_is_picked_up(pki: Pki, files: tuple[Path, Path, Path]) -> None:
    store = _store(files)
    before = store.signer_for(DIP_ID)
    _replace(files[0], pfx_bytes(pki.signer_b.key, pki.signer_b.cert))
    events = store.reload_if_changed()
    assert [(e.ok, e.detail) for e in events] == [(True, _subject(pki.signer_b))]
    assert store.signer_for(DIP_ID).subject == _subject(pki.signer_b)
    assert before.subject == _subject(pki.signer)  # holders of the old one are unaffected


def test_changed_api_key_is_picked_up(files: tuple[Path, Path, Path]) -> None:
    store = _store(files)
    files[1].write_text("primary-key-22\n")  # rewritten in place, as `kubectl cp` would
    events = store.reload_if_changed()
    assert [e.ok for e in events] == [True]
    assert store.api_keys_for(DIP_ID) == ("primary-key-22", "secondary-key-1")


def test_broken_pfx_keeps_old_credential(pki: Pki, files: tuple[Path, Path, Path]) -> None:
    store = _store(files)
    _replace(files[0], b"half-written garbage")
    events = store.reload_if_changed()
    assert [e.ok for e in events] == [False]
    assert store.signer_for(DIP_ID).subject == _subject(pki.signer)
    assert store.reload_if_changed() == []  # not retried every tick while unchanged

    _replace(files[0], pfx_bytes(pki.signer_b.key, pki.signer_b.cert))  # fixed rotation
    assert [e.ok for e in store.reload_if_changed()] == [True]
    assert store.signer_for(DIP_ID).subject == _subject(pki.signer_b)


def test_expired_replacement_keeps_old_credential(pki: Pki, files: tuple[Path, Path, Path]) -> None:
    store = _store(files)
    _replace(files[0], pfx_bytes(pki.expired.key, pki.expired.cert))
    events = store.reload_if_changed()
    assert len(events) == 1
    assert not events[0].ok
    assert "expired" in events[0].detail
    assert store.signer_for(DIP_ID).subject == _subject(pki.signer)


def test_emptied_api_key_keeps_old_keys(files: tuple[Path, Path, Path]) -> None:
    store = _store(files)
    files[2].write_text("")
    events = store.reload_if_changed()
    assert [e.ok for e in events] == [False]
    assert "empty" in events[0].detail
    assert store.api_keys_for(DIP_ID) == ("primary-key-1", "secondary-key-1")


def test_deleted_file_keeps_old_credential(pki: Pki, files: tuple[Path, Path, Path]) -> None:
    store = _store(files)
    files[0].unlink()
    assert store.reload_if_changed() == []
    assert store.signer_for(DIP_ID).subject == _subject(pki.signer)


def test_initial_load_refuses_broken_file(files: tuple[Path, Path, Path]) -> None:
    files[0].write_bytes(b"not a pfx")
    with pytest.raises(CredentialError):
        _store(files)


def test_unknown_signer_name_refused(files: tuple[Path, Path, Path]) -> None:
    with pytest.raises(CredentialError, match="unknown signer"):
        KeyStore([SignerSpec("mp", files[0])], [DipIdSpec(DIP_ID, "other", files[1])])


def _k8s_secret(mount: Path, version: str, contents: dict[str, bytes]) -> None:
    """Lay out (or update) a Secret volume as the kubelet does: files in a timestamped dir,
    ``..data`` a symlink to it, each visible name a symlink through ``..data``; an update
    writes a new dir and renames a fresh ``..data`` link over the old one (atomic)."""
    data_dir = mount / f"..{version}"
    data_dir.mkdir(parents=True)
    for name, content in contents.items():
        (data_dir / name).write_bytes(content)
    new_link = mount / "..data_tmp"
    new_link.symlink_to(data_dir.name)
    os.replace(new_link, mount / "..data")
    for name in contents:
        visible = mount / name
        if not visible.is_symlink():
            visible.symlink_to(Path("..data") / name)


def test_kubernetes_symlink_swap(pki: Pki, tmp_path: Path) -> None:
    mount = tmp_path / "secret"
    _k8s_secret(
        mount,
        "2026_11_23_10_00_00.1",
        {
            "signing.pfx": pfx_bytes(pki.signer.key, pki.signer.cert),
            "api-key": b"primary-key-1\n",
        },
    )
    store = KeyStore(
        [SignerSpec("mp", mount / "signing.pfx")],
        [DipIdSpec(DIP_ID, "mp", mount / "api-key")],
    )
    assert store.signer_for(DIP_ID).subject == _subject(pki.signer)

    _k8s_secret(
        mount,
        "2026_11_23_11_00_00.2",
        {
            "signing.pfx": pfx_bytes(pki.signer_b.key, pki.signer_b.cert),
            "api-key": b"primary-key-2\n",
        },
    )
    events = store.reload_if_changed()
    assert sorted(e.ok for e in events) == [True, True]
    assert store.signer_for(DIP_ID).subject == _subject(pki.signer_b)
    assert store.api_key_for(DIP_ID) == "primary-key-2"


async def test_watch_reloads_in_background(pki: Pki, files: tuple[Path, Path, Path]) -> None:
    store = _store(files)
    task = asyncio.create_task(store.watch(interval=0.02))
    try:
        _replace(files[0], pfx_bytes(pki.signer_b.key, pki.signer_b.cert))
        for _ in range(250):
            if store.signer_for(DIP_ID).subject == _subject(pki.signer_b):
                break
            await asyncio.sleep(0.02)
        assert store.signer_for(DIP_ID).subject == _subject(pki.signer_b)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_file_replaced_while_it_is_read_is_read_again_next_time(
    files: tuple[Path, Path, Path],
) -> None:
    """The identity is taken before the read: a rotation that lands between reading the file
    and remembering it must not be mistaken for what was read."""
    pfx, primary, secondary = files

    class RotatedMidRead(KeyStore):
        rotations: list[str] = []

        @staticmethod
        def _read_api_keys(dip: DipIdSpec) -> tuple[str, ...]:
            keys = KeyStore._read_api_keys(dip)
            if RotatedMidRead.rotations:  # the writer lands right after this read
                _replace(primary, RotatedMidRead.rotations.pop().encode())
            return keys

    store = RotatedMidRead([SignerSpec("mp", pfx)], [DipIdSpec(DIP_ID, "mp", primary, secondary)])
    _replace(primary, b"primary-key-2\n")
    RotatedMidRead.rotations.append("primary-key-3\n")
    events = store.reload_if_changed()
    assert [e.ok for e in events] == [True]
    assert store.api_key_for(DIP_ID) == "primary-key-2"  # what was read this tick
    events = store.reload_if_changed()
    assert [e.ok for e in events] == [True]
    assert store.api_key_for(DIP_ID) == "primary-key-3"  # the mid-read rotation is not lost
    assert store.reload_if_changed() == []
