"""TLS for the DIP connection: the DCP's mTLS client context.

Python's ``ssl`` loads certificates only from files, and the DIP hands out PFX files; a PFX is
converted to PEM in a private temporary file that exists only for the duration of the load. The
key in that file is encrypted with a random one-time password that lives only in this process's
memory, so even a copy of the file taken during the load (``/dev/shm`` is shared by every
process of the pod) does not give the key away.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from gateway.signing.credentials import SigningCredential


def _load_chain(context: ssl.SSLContext, credential: SigningCredential) -> None:
    password = secrets.token_urlsafe(32).encode()
    key = credential.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    certs = b"".join(
        c.public_bytes(serialization.Encoding.PEM)
        for c in (credential.certificate, *credential.chain)
    )
    tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, name = tempfile.mkstemp(prefix="dcp-mtls-", suffix=".pem", dir=tmp_dir)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + certs)
        context.load_cert_chain(name, password=password)
    finally:
        os.unlink(name)


def client_context(credential: SigningCredential | None, ca_bundle: Path | None) -> ssl.SSLContext:
    """Verify the server against ``ca_bundle`` alone when it is set (the system store is then
    not consulted: any public CA could otherwise vouch for a "DIP"), against the system store
    when it is None; present ``credential`` as the client certificate."""
    cafile = str(ca_bundle) if ca_bundle is not None else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if credential is not None:
        _load_chain(context, credential)
    return context
