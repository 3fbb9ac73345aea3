"""The key store: every client's signing credential and API keys, indexed by DIP ID.

Files are what Kubernetes mounts (secrets appear as symlinked files that are swapped on
update), so the store re-reads a file when its identity (inode, size, mtime) changes. A reload
builds a new immutable credential and swaps the reference: work already holding the old one
finishes with it, and nothing is dropped. A changed file that no longer loads (half-written,
wrong key) leaves the previous credential in place and is reported, so a bad rotation cannot
take a working client down.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from gateway.signing.credentials import (
    CredentialError,
    Finding,
    Severity,
    SigningCredential,
    usable_findings,
)
from gateway.signing.loading import CredentialFiles, load_here, load_in_workers

_log = structlog.get_logger(__name__)

_FileId = tuple[int, int, int, int]


class UnknownSender(KeyError):
    """No client owns this DIP ID."""


@dataclass(frozen=True)
class SignerSpec:
    """Where one client's signing credential lives."""

    name: str
    key_path: Path
    cert_path: Path | None = None
    password_file: Path | None = None


@dataclass(frozen=True)
class DipIdSpec:
    """One DIP ID: the client whose credential signs for it, and its API key files."""

    dip_id: str
    signer: str
    api_key_file: Path
    secondary_api_key_file: Path | None = None


@dataclass(frozen=True)
class ReloadEvent:
    path: str
    ok: bool
    detail: str


def _file_id(path: Path) -> _FileId:
    st = os.stat(path)
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def read_secret_file(path: Path) -> str:
    """A secret from a mounted file, stripped of the trailing newline editors add."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise CredentialError(f"{path}: file not found") from exc
    except OSError as exc:
        raise CredentialError(f"{path}: cannot read: {exc.strerror}") from exc
    if not value:
        raise CredentialError(f"{path}: file is empty")
    return value


_Signer = tuple[SigningCredential, list[Finding]]


def _credential_files(spec: SignerSpec) -> CredentialFiles | CredentialError:
    try:
        password = (
            read_secret_file(spec.password_file).encode()
            if spec.password_file is not None
            else None
        )
    except CredentialError as exc:
        return exc
    return CredentialFiles(spec.key_path, spec.cert_path, password)


def _load_signers(
    specs: Sequence[SignerSpec], now: datetime, *, in_workers: bool
) -> list[_Signer | CredentialError]:
    """Each signer's credential and findings, or why it cannot be used, in ``specs`` order.
    ``in_workers``: the files are opened in worker processes (:mod:`gateway.signing.loading`)."""
    files = [_credential_files(spec) for spec in specs]
    readable = [f for f in files if isinstance(f, CredentialFiles)]
    opened = iter((load_in_workers if in_workers else load_here)(readable))
    out: list[_Signer | CredentialError] = []
    for found in files:
        loaded = next(opened) if isinstance(found, CredentialFiles) else found
        if isinstance(loaded, CredentialError):
            out.append(loaded)
            continue
        try:
            out.append((loaded, usable_findings(loaded, now)))
        except CredentialError as exc:
            out.append(exc)
    return out


def _watched_files(spec: SignerSpec) -> list[Path]:
    return [p for p in (spec.key_path, spec.cert_path, spec.password_file) if p is not None]


class KeyStore:
    """Credentials and API keys by DIP ID, with reload-on-change. Thread-safe for readers."""

    def __init__(
        self,
        signers: Iterable[SignerSpec],
        dip_ids: Iterable[DipIdSpec],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clock = clock
        self._signer_specs = {s.name: s for s in signers}
        self._dip_specs = {d.dip_id: d for d in dip_ids}
        for dip in self._dip_specs.values():
            if dip.signer not in self._signer_specs:
                raise CredentialError(f"DIP ID {dip.dip_id} names unknown signer {dip.signer!r}")
        self._credentials: dict[str, SigningCredential] = {}
        self._findings: dict[str, list[Finding]] = {}
        self._api_keys: dict[str, tuple[str, ...]] = {}
        self._seen: dict[Path, _FileId] = {}
        self._load_all()

    # -- reading (hot path) -------------------------------------------------------------

    def signer_for(self, dip_id: str) -> SigningCredential:
        spec = self._dip_specs.get(dip_id)
        if spec is None:
            raise UnknownSender(dip_id)
        return self._credentials[spec.signer]

    def api_keys_for(self, dip_id: str) -> tuple[str, ...]:
        """Primary first, then the secondary when configured (for rotation)."""
        try:
            return self._api_keys[dip_id]
        except KeyError:
            raise UnknownSender(dip_id) from None

    def api_key_for(self, dip_id: str) -> str:
        return self.api_keys_for(dip_id)[0]

    def owns(self, dip_id: str) -> bool:
        return dip_id in self._dip_specs

    @property
    def dip_ids(self) -> list[str]:
        return list(self._dip_specs)

    def credentials(self) -> dict[str, SigningCredential]:
        """Signer name -> current credential (for metrics and reports)."""
        return dict(self._credentials)

    def findings(self) -> dict[str, list[Finding]]:
        return {name: list(f) for name, f in self._findings.items()}

    def days_to_expiry(self) -> dict[str, float]:
        now = self._clock()
        return {name: c.days_to_expiry(now) for name, c in self._credentials.items()}

    # -- loading ------------------------------------------------------------------------

    def _load_all(self) -> None:
        """Every credential, or the first signer's error. Several open in parallel, each in a
        worker process; one alone opens here (nothing runs beside start-up yet)."""
        specs = list(self._signer_specs.values())
        stats = [self._stat(_watched_files(spec)) for spec in specs]  # before reading: _snapshot
        loaded = _load_signers(specs, self._clock(), in_workers=len(specs) > 1)
        for spec, files_seen, result in zip(specs, stats, loaded, strict=True):
            if isinstance(result, CredentialError):
                raise result
            credential, findings = result
            self._credentials[spec.name] = credential
            self._findings[spec.name] = findings
            for warning in (f for f in findings if f.severity is Severity.WARNING):
                _log.warning("credential_warning", signer=spec.name, detail=warning.message)
            self._seen.update(files_seen)
        for dip_id, dip in self._dip_specs.items():
            seen = self._stat(self._api_key_paths(dip))
            self._api_keys[dip_id] = self._read_api_keys(dip)
            self._seen.update(seen)

    @staticmethod
    def _api_key_paths(dip: DipIdSpec) -> list[Path]:
        return [p for p in (dip.api_key_file, dip.secondary_api_key_file) if p is not None]

    @staticmethod
    def _read_api_keys(dip: DipIdSpec) -> tuple[str, ...]:
        return tuple(read_secret_file(p) for p in KeyStore._api_key_paths(dip))

    @staticmethod
    def _stat(paths: Iterable[Path]) -> dict[Path, _FileId]:
        """Identity of each file that can be stat'ed now (a missing one is left out)."""
        out: dict[Path, _FileId] = {}
        for path in paths:
            try:
                out[path] = _file_id(path)
            except OSError:
                continue  # mid-swap or deleted: keep what we have and look again next time
        return out

    def _snapshot(self, paths: Iterable[Path]) -> dict[Path, _FileId] | None:
        """The files' identities when any changed since last read, else None.

        Taken *before* the files are read and remembered only after: a file replaced while
        it is being read then differs from the remembered identity, so the next tick reads
        it again instead of keeping the half-old content for good."""
        current = self._stat(paths)
        if all(self._seen.get(path) == fid for path, fid in current.items()):
            return None
        return current

    def reload_if_changed(self) -> list[ReloadEvent]:
        """Re-read every credential or API key file that changed since it was last read."""
        events: list[ReloadEvent] = []
        changed = [
            (spec, seen)
            for spec in self._signer_specs.values()
            if (seen := self._snapshot(_watched_files(spec))) is not None
        ]
        # In worker processes even for one key: the event loop runs beside a reload.
        loaded = _load_signers([spec for spec, _ in changed], self._clock(), in_workers=True)
        for (spec, seen), result in zip(changed, loaded, strict=True):
            self._seen.update(seen)  # a broken file too: not retried every tick
            if isinstance(result, CredentialError):
                events.append(ReloadEvent(str(spec.key_path), False, str(result)))
                continue
            self._credentials[spec.name], self._findings[spec.name] = result
            events.append(ReloadEvent(str(spec.key_path), True, result[0].subject))
        for dip_id, dip in self._dip_specs.items():
            seen = self._snapshot(self._api_key_paths(dip))
            if seen is None:
                continue
            try:
                self._api_keys[dip_id] = self._read_api_keys(dip)
            except CredentialError as exc:
                events.append(ReloadEvent(str(dip.api_key_file), False, str(exc)))
                self._seen.update(seen)
                continue
            self._seen.update(seen)
            events.append(ReloadEvent(str(dip.api_key_file), True, f"API keys for {dip_id}"))
        for event in events:
            if event.ok:
                _log.info("credential_reloaded", path=event.path, detail=event.detail)
            else:
                _log.error("credential_reload_failed", path=event.path, error=event.detail)
        return events

    async def watch(self, interval: float = 10.0) -> None:
        """Poll for changed files until cancelled. Polling, not inotify: it works on every
        volume type, including Kubernetes' atomically swapped secret symlinks."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.reload_if_changed)
