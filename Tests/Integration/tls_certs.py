"""Certificates for the TLS termination tests (and the TLS benchmark).

``make_term_certs(dir)`` writes, with the ``openssl`` command line, a throw-away root CA,
an intermediate CA, and leaf certificates for the names in ``TERM_LEAVES``:

* ``default`` (default.example.com), ``a`` (a.example.com), ``apps``
  (``*.apps.example.com``), ``pass`` (pass.example.com, presented by a passthrough
  backend) are signed by the root: ``KEY.pem`` holds the leaf only;
* ``b`` (b.example.com) is signed by the intermediate: ``b.pem`` holds the leaf then the
  intermediate (a client that trusts only the root must be sent both).

Every leaf has its name in the subject CN and as the only DNS subjectAltName, and
``O=Sluice Test`` in the subject. ``make_leaf`` makes one more (a replacement for a
reload test: another organisation, serial and key). ``mismatched_key`` writes a fresh key
that belongs to no certificate. ``kind`` chooses the key type: ``ec`` (ECDSA P-256) or
``rsa`` (RSA 2048).

The returned object is a ``tls_backends.Certs`` (``.ca``, ``.cert(key)``, ``.key(key)``),
so a ``TLSBackend`` can present these certificates too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Optional

from tls_backends import Certs, _openssl

TERM_LEAVES = {
    "default": "default.example.com",
    "a": "a.example.com",
    "apps": "*.apps.example.com",
    "pass": "pass.example.com",
}
CHAINED_LEAVES = {"b": "b.example.com"}  # signed by the intermediate
ORG = "Sluice Test"


def _newkey(kind: str):
    if kind == "ec":
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    if kind == "rsa":
        return ["-newkey", "rsa:2048", "-nodes"]
    raise ValueError(f"key kind {kind!r}: ec or rsa")


def _ca(directory: Path, name: str, cn: str, kind: str, signer: Optional[str] = None) -> None:
    if signer is None:
        _openssl("req", "-x509", *_newkey(kind), "-keyout", f"{name}.key", "-out", f"{name}.pem",
                 "-days", "3", "-subj", f"/O={ORG}/CN={cn}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-addext", "subjectKeyIdentifier=hash", cwd=directory)
        return
    ext = directory / f"{name}.ext"
    ext.write_text("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                   "keyUsage=critical,keyCertSign,cRLSign\n"
                   "subjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid:always\n")
    _openssl("req", "-new", *_newkey(kind), "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/O={ORG}/CN={cn}", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{signer}.pem", "-CAkey",
             f"{signer}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "3",
             "-extfile", ext.name, cwd=directory)


def make_leaf(directory: Path, key: str, name: str, signer: str = "ca", org: str = ORG,
              kind: str = "ec", chain: bool = False) -> None:
    """Writes KEY.pem (leaf, then the signer's certificate if ``chain``) and KEY.key."""
    ext = directory / f"{key}.ext"
    ext.write_text(f"subjectAltName=DNS:{name}\n"
                   "basicConstraints=CA:FALSE\n"
                   f"keyUsage=critical,digitalSignature{',keyEncipherment' if kind == 'rsa' else ''}\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid:always\n")
    _openssl("req", "-new", *_newkey(kind), "-keyout", f"{key}.key", "-out", f"{key}.csr",
             "-subj", f"/O={org}/CN={name}", cwd=directory)
    _openssl("x509", "-req", "-in", f"{key}.csr", "-CA", f"{signer}.pem", "-CAkey",
             f"{signer}.key", "-CAcreateserial", "-out", f"{key}.leaf.pem", "-days", "3",
             "-extfile", ext.name, cwd=directory)
    pem = (directory / f"{key}.leaf.pem").read_text()
    if chain:
        pem += (directory / f"{signer}.pem").read_text()
    (directory / f"{key}.pem").write_text(pem)


def mismatched_key(directory: Path, key: str, kind: str = "ec") -> Path:
    """A private key in KEY.key that matches no certificate."""
    algo = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if kind == "ec" \
        else ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
    _openssl("genpkey", *algo, "-out", f"{key}.key", cwd=directory)
    return directory / f"{key}.key"


def make_term_certs(directory: Path, kind: str = "ec") -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    _ca(directory, "ca", "Sluice Test Root CA", kind)
    _ca(directory, "inter", "Sluice Test Intermediate CA", kind, signer="ca")
    for key, name in TERM_LEAVES.items():
        make_leaf(directory, key, name, kind=kind)
    for key, name in CHAINED_LEAVES.items():
        make_leaf(directory, key, name, signer="inter", kind=kind, chain=True)
    return Certs(directory)


# --------------------------------------------------------------------------
# reading what a server presented

def pem_subject(pem: str) -> str:
    p = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253"],
                       input=pem.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10)
    return p.stdout.decode().strip()


def pem_sans(pem: str) -> list:
    p = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"],
                       input=pem.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10)
    return re.findall(r"DNS:([^,\s]+)", p.stdout.decode())


def first_pem(text: str) -> Optional[str]:
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
    return m.group(0) + "\n" if m else None


def all_pems(text: str) -> list:
    return [m + "\n" for m in
            re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)]
