"""Who may sign, with which key: Ed25519 signatures on packs and sign-off decisions (SPEC §10).

* **Private keys** live in each person's own key folder, outside every workspace:
  ``$BILLMIG_KEY_DIR``, else ``~/.config/billmig/keys/``; one PKCS#8 PEM file per signer
  (``<id>.pem``, mode 0600). A key folder inside the workspace is refused.
* **Public keys** are registered in the workspace, committed with it: ``signers.toml``
  (``[signoff] signers``) names each signer's id, full name, roles and public key file
  (``keys/<id>.pub.pem``, SubjectPublicKeyInfo PEM). Role ``builder`` may build packs; the
  ``[signoff] roles`` each need at least one signer registered with that role.
* Signatures are plain Ed25519 over the exact bytes signed, so ``openssl pkeyutl -verify
  -pubin -inkey keys/<id>.pub.pem -rawin -in FILE -sigfile FILE.sig`` checks them without
  billmig (runbook 05).

``cryptography`` (pyca) does the cryptography; nothing here is hand-rolled.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from migrate.core.config import Config
from migrate.core.errors import EXIT_OK, ConfigError, InputError
from migrate.core.rendering import TableData
from migrate.core.runs import check_id

KEY_DIR_VARIABLE = "BILLMIG_KEY_DIR"
SIGNER_VARIABLE = "BILLMIG_SIGNER"
BUILDER = "builder"
"""The role allowed to build (and so sign) sign-off packs."""


@dataclass(frozen=True)
class Signer:
    """One registered signer: id, full name, roles and public key."""

    id: str
    name: str
    roles: tuple[str, ...]
    public_key_file: str
    """Workspace-relative path of the public key (``keys/<id>.pub.pem``)."""
    public_pem: bytes

    @property
    def key_sha256(self) -> str:
        """SHA-256 of the public key's DER bytes: what records name the key by."""
        return key_fingerprint(self.public_key())

    def public_key(self) -> Ed25519PublicKey:
        """The Ed25519 public key.

        Raises:
            ConfigError: the registered file is not an Ed25519 public key.
        """
        try:
            key = serialization.load_pem_public_key(self.public_pem)
        except ValueError:
            key = None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(
                f"{self.public_key_file} (signer {self.id}) is not an Ed25519 public key",
                hint="register the .pub.pem file that billmig keys new wrote",
            )
        return key

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is this signer's over ``message``."""
        try:
            self.public_key().verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Registry:
    """The signers registered in the workspace."""

    path: Path
    signers: Mapping[str, Signer]

    def get(self, signer_id: str) -> Signer | None:
        """The signer ``signer_id``, None when not registered."""
        return self.signers.get(signer_id)

    def with_role(self, role: str) -> list[Signer]:
        """Every signer registered for ``role``."""
        return [s for s in self.signers.values() if role in s.roles]


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of a public key's SubjectPublicKeyInfo DER bytes."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def registry_path(config: Config) -> Path:
    """Where the workspace registers its signers."""
    return config.resolve(config.signoff.signers)


def load_registry(config: Config) -> Registry:
    """The workspace's registered signers (none when ``signers.toml`` does not exist yet).

    Raises:
        ConfigError: the file is not valid TOML, an entry lacks a field, or a key file is
            missing or not an Ed25519 public key.
    """
    path = registry_path(config)
    if not path.is_file():
        return Registry(path, {})
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix the file") from None
    entries = raw.get("signers", {})
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: [signers] must be a table of signer ids")
    signers = {sid: _signer(config, path, sid, entry) for sid, entry in entries.items()}
    return Registry(path, signers)


def _signer(config: Config, path: Path, signer_id: str, entry: object) -> Signer:
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: signers.{signer_id} must be a table")
    name, roles, key_file = entry.get("name"), entry.get("roles"), entry.get("public_key")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{path}: signers.{signer_id} has no name", hint='name = "First Last"')
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles) or not roles:
        raise ConfigError(f"{path}: signers.{signer_id}.roles must be a list of role names")
    if not isinstance(key_file, str):
        raise ConfigError(f"{path}: signers.{signer_id} has no public_key file")
    key_path = config.resolve(key_file)
    if not key_path.is_file():
        raise ConfigError(
            f"{path}: the public key of {signer_id} ({key_file}) does not exist",
            hint="commit the .pub.pem file billmig keys new wrote",
        )
    signer = Signer(signer_id, name.strip(), tuple(roles), key_file, key_path.read_bytes())
    signer.public_key()  # a wrong file is refused here, not at the first verification
    return signer


def key_dir(config: Config, environ: Mapping[str, str] | None = None) -> Path:
    """The folder holding this person's private keys, outside the workspace.

    Raises:
        ConfigError: the folder lies inside the workspace (private keys never enter it).
    """
    env = os.environ if environ is None else environ
    folder = Path(env.get(KEY_DIR_VARIABLE) or Path.home() / ".config" / "billmig" / "keys")
    folder = folder.expanduser().resolve()
    root = config.root.resolve()
    if folder == root or root in folder.parents:
        raise ConfigError(
            f"the key folder {folder} is inside the workspace {root}",
            hint=f"private keys never enter a workspace: point {KEY_DIR_VARIABLE} elsewhere",
        )
    return folder


def private_key_path(config: Config, signer_id: str) -> Path:
    """Where ``signer_id``'s private key lives on this machine."""
    return key_dir(config) / f"{signer_id}.pem"


@dataclass(frozen=True)
class SigningKey:
    """A signer's private key, loaded for one signature."""

    signer: Signer
    private: Ed25519PrivateKey

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``message``."""
        return self.private.sign(message)

    def sign_b64(self, message: bytes) -> str:
        """The signature as base64 text (for JSON lines)."""
        return base64.b64encode(self.sign(message)).decode("ascii")


def signing_key(config: Config, registry: Registry, role: str, signer_id: str | None) -> SigningKey:
    """The private key to sign as ``role`` with.

    ``signer_id``, else ``$BILLMIG_SIGNER``, else the one signer registered for the role whose
    private key is on this machine.

    Raises:
        InputError: no such signer, not registered for the role, no private key here, or the
            private key does not match the registered public key.
    """
    wanted = signer_id or os.environ.get(SIGNER_VARIABLE) or None
    if wanted is None:
        local = [s for s in registry.with_role(role) if private_key_path(config, s.id).is_file()]
        if len(local) != 1:
            found = "none" if not local else ", ".join(s.id for s in local)
            raise InputError(
                f"which key signs as {role}? signers for it with a private key here: {found}",
                hint=f"pass --signer ID (or set {SIGNER_VARIABLE}); billmig keys list shows them",
            )
        wanted = local[0].id
    signer = registry.get(wanted)
    if signer is None:
        raise InputError(
            f"signer {wanted!r} is not registered in {registry.path.name}",
            hint="billmig keys new ID --name ... --role ..., then commit the registration",
        )
    if role not in signer.roles:
        raise InputError(
            f"signer {wanted} is not registered for role {role} (roles: {', '.join(signer.roles)})",
            hint="sign with a signer registered for that role",
        )
    return SigningKey(signer, _load_private(config, signer))


def _load_private(config: Config, signer: Signer) -> Ed25519PrivateKey:
    path = private_key_path(config, signer.id)
    if not path.is_file():
        raise InputError(
            f"no private key for signer {signer.id} on this machine ({path})",
            hint="sign on the signer's own machine, or set BILLMIG_KEY_DIR to their key folder",
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path} is not a readable private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path} is not an Ed25519 private key")
    if key_fingerprint(key.public_key()) != signer.key_sha256:
        raise InputError(
            f"the private key {path} does not match the public key registered for {signer.id}",
            hint="register this key's public half, or use the matching private key",
        )
    return key


@dataclass(frozen=True)
class NewKey:
    """A key pair just made: where each half is."""

    signer: Signer
    private_path: Path
    public_path: Path
    registry: Path

    @property
    def exit_code(self) -> int:
        """Always 0: refusals raise."""
        return EXIT_OK

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "signer": self.signer.id,
            "name": self.signer.name,
            "roles": list(self.signer.roles),
            "key_sha256": self.signer.key_sha256,
            "private_key": str(self.private_path),
            "public_key": str(self.public_path),
            "registry": str(self.registry),
        }

    def tables(self) -> list[TableData]:
        """Where each half is and what to do next."""
        return [
            TableData(
                title=f"key made for {self.signer.id} ({self.signer.name})",
                headers=("what", "where"),
                rows=[
                    (
                        "private key (yours alone; back it up, never share or commit it)",
                        self.private_path,
                    ),
                    ("public key (commit it)", self.public_path),
                    ("registered in (commit it)", self.registry),
                    ("roles", ", ".join(self.signer.roles)),
                    ("key sha256", self.signer.key_sha256),
                ],
                footer="commit the public key and the registry: git add keys/ signers.toml",
            )
        ]


@dataclass(frozen=True)
class KeyList:
    """The registered signers and which private keys this machine holds."""

    registry: Path
    signers: tuple[tuple[Signer, bool], ...]

    @property
    def exit_code(self) -> int:
        """Always 0."""
        return EXIT_OK

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "registry": str(self.registry),
            "signers": [
                {
                    "id": s.id,
                    "name": s.name,
                    "roles": list(s.roles),
                    "key_sha256": s.key_sha256,
                    "private_key_here": here,
                }
                for s, here in self.signers
            ],
        }

    def tables(self) -> list[TableData]:
        """One row per signer."""
        return [
            TableData(
                title=f"signers registered in {self.registry}",
                headers=("id", "name", "roles", "key sha256", "private key here"),
                rows=[
                    (s.id, s.name, ", ".join(s.roles), s.key_sha256[:16], "yes" if here else "no")
                    for s, here in self.signers
                ]
                or [("none yet", "billmig keys new ID --name ... --role ...", "", "", "")],
            )
        ]


def list_keys(config: Config) -> KeyList:
    """Every registered signer, and whether its private key is on this machine."""
    registry = load_registry(config)
    return KeyList(
        registry.path,
        tuple((s, private_key_path(config, s.id).is_file()) for s in registry.signers.values()),
    )


def new_key(config: Config, signer_id: str, name: str, roles: Iterable[str]) -> NewKey:
    """Make a key pair: the private half in the key folder, the public half registered.

    Raises:
        InputError: a bad id, an existing private key or registration for the id, no roles.
    """
    check_id(signer_id, "signer id")  # it names the key files
    roles = tuple(dict.fromkeys(r.strip() for r in roles if r.strip()))
    if not roles or not name.strip():
        raise InputError("a signer needs a name and at least one role", hint="--name, --role")
    unknown = [r for r in roles if r != BUILDER and r not in config.signoff.roles]
    if unknown:
        raise InputError(
            f"role {unknown[0]!r} is neither {BUILDER} nor one of [signoff] roles",
            hint=f"roles: {BUILDER}, {', '.join(config.signoff.roles)}",
        )
    registry = load_registry(config)
    private_path = private_key_path(config, signer_id)
    if registry.get(signer_id) is not None or private_path.exists():
        raise InputError(
            f"signer {signer_id} already exists ({private_path} or {registry.path.name})",
            hint="choose another id; a key is never overwritten",
        )
    key = _new_private_key(private_path)
    public_file = f"keys/{signer_id}.pub.pem"
    public_path = config.resolve(public_file)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    public_pem = _public_pem(key)
    public_path.write_bytes(public_pem)
    _register(registry.path, signer_id, name.strip(), roles, public_file)
    signer = Signer(signer_id, name.strip(), roles, public_file, public_pem)
    return NewKey(signer, private_path, public_path, registry.path)


def _new_private_key(path: Path) -> Ed25519PrivateKey:
    """A new key, written to ``path`` (which must not exist) readable by its owner alone."""
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return key


def _public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _register(path: Path, signer_id: str, name: str, roles: tuple[str, ...], key_file: str) -> None:
    """Append one signer to the registry (TOML written by hand: the standard library only reads)."""
    header = (
        "# Signers of sign-off packs: public keys only. Private keys stay in each person's key\n"
        "# folder (BILLMIG_KEY_DIR or ~/.config/billmig/keys/) and never enter the workspace.\n"
        "# Commit this file and keys/*.pub.pem: the registration is part of the audit trail.\n"
    )
    text = path.read_text(encoding="utf-8") if path.is_file() else header
    listed = ", ".join(_toml_string(r) for r in roles)
    text += (
        f"\n[signers.{_toml_string(signer_id)}]\nname = {_toml_string(name)}\n"
        f"roles = [{listed}]\npublic_key = {_toml_string(key_file)}\n"
    )
    path.write_text(text, encoding="utf-8")


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped) + '"'


DEMO_SIGNER = "demo"


def demo_registry(config: Config, folder: Path) -> str:
    """A registry for the demo alone: one signer ``demo`` holding every role, in ``folder``.

    Its private key lives in the key folder like any other (made on first use, then reused);
    the registry and public key are rewritten from it each time. Returns the registry's path
    as the configuration names it (workspace-relative).
    """
    path = private_key_path(config, DEMO_SIGNER)
    if path.is_file():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise InputError(f"{path} is not an Ed25519 private key", hint="remove it")
    else:
        key = _new_private_key(path)
    folder.mkdir(parents=True, exist_ok=True)
    public = folder / f"{DEMO_SIGNER}.pub.pem"
    public.write_bytes(_public_pem(key))
    registry = folder / "signers.toml"
    registry.unlink(missing_ok=True)
    relative = config.relative(public)
    _register(registry, DEMO_SIGNER, "billmig demo (no person)",
              (BUILDER, *config.signoff.roles), relative)  # fmt: skip
    return config.relative(registry)
