"""Secrets at rest: envelope encryption, per-tenant data keys wrapped by rotatable master keys.

Why not only django-cryptography's `encrypt(...)` field: it derives one key from
`settings.CRYPTOGRAPHY_KEY` and cannot decrypt with an older one, so a master key could not be
rotated without losing every stored secret. Instead:

- the master keys are `settings.CRYPTOGRAPHY_KEYS`, newest first (a Fernet key is used as it is, any other
  string is stretched with HKDF-SHA256); `MultiFernet` decrypts with any of them and encrypts with the first;
- each tenant has a Fernet data key (`TenantDataKey`), stored only wrapped by a master key;
- a credential's secrets are one JSON document encrypted with its tenant's data key (`Credential.secrets_ciphertext`).

Rotating the master key (`rotate_encryption_key`) only re-wraps the small data keys (and re-encrypts the
values of other apps' django-cryptography fields, which can only be read with one key); `--data-keys`
also gives each tenant a new data key and re-encrypts its secrets. Both skip what is already done, so a
run that stops half-way is simply run again.

When a key leaks: put a new key first in `CRYPTOGRAPHY_KEYS` (keep the leaked one after it), deploy,
run `manage.py rotate_encryption_key --data-keys`, then remove the leaked key from `CRYPTOGRAPHY_KEYS`
and deploy again; finally ask tenants to rotate the provider keys themselves if the database leaked too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import transaction
from django_cryptography.utils.crypto import InvalidToken as FieldInvalidToken

from llm.config.versions import bump_config_version
from llm.models import Credential, TenantDataKey

_HKDF_SALT = b"byok-platform/llm-credentials"
_lock = threading.Lock()
_masters: dict[tuple[str, ...], tuple[MultiFernet, list[str]]] = {}
_data_keys: dict[tuple[int, str], Fernet] = {}


class DecryptionError(Exception):
    """A stored secret cannot be decrypted with any configured key (message never contains the secret)."""


def _fernet_key(raw: str) -> bytes:
    try:
        if len(base64.urlsafe_b64decode(raw.encode())) == 32:
            return raw.encode()
    except (binascii.Error, ValueError):
        pass
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=b"master-key").derive(
        raw.encode()
    )
    return base64.urlsafe_b64encode(derived)


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"fingerprint:" + key).hexdigest()[:12]


def _master() -> tuple[MultiFernet, list[str]]:
    raw_keys = tuple(k for k in settings.CRYPTOGRAPHY_KEYS if k)
    if not raw_keys:
        raise DecryptionError("CRYPTOGRAPHY_KEYS is empty: set at least one key.")
    cached = _masters.get(raw_keys)
    if cached is None:
        keys = [_fernet_key(k) for k in raw_keys]
        cached = (MultiFernet([Fernet(k) for k in keys]), [_fingerprint(k) for k in keys])
        with _lock:
            _masters.clear()
            _masters[raw_keys] = cached
    return cached


def current_master_id() -> str:
    """Fingerprint of the newest master key (what `TenantDataKey.master_key_id` shows when up to date)."""
    return _master()[1][0]


def wrap(data_key: bytes) -> str:
    return _master()[0].encrypt(data_key).decode()


def unwrap(wrapped: str) -> bytes:
    try:
        return _master()[0].decrypt(wrapped.encode())
    except InvalidToken:
        raise DecryptionError(
            "A tenant data key cannot be unwrapped with any key in CRYPTOGRAPHY_KEYS."
        ) from None


def rewrap(wrapped: str) -> str:
    try:
        return _master()[0].rotate(wrapped.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A tenant data key cannot be unwrapped with any key in CRYPTOGRAPHY_KEYS."
        ) from None


def _data_fernet(data_key) -> Fernet:
    memo_key = (data_key.pk, data_key.wrapped_key)
    fernet = _data_keys.get(memo_key)
    if fernet is None:
        fernet = Fernet(unwrap(data_key.wrapped_key))
        with _lock:
            if len(_data_keys) > 10_000:
                _data_keys.clear()
            _data_keys[memo_key] = fernet
    return fernet


def current_data_key(tenant_id: int):
    """The tenant's newest data key, created (wrapped by the newest master key) on first use."""
    key = (
        TenantDataKey.objects.for_tenant(tenant_id)
        .filter(retired_at__isnull=True)
        .order_by("-version")
        .first()
    )
    if key is not None:
        return key
    with transaction.atomic():
        last = TenantDataKey.objects.for_tenant(tenant_id).select_for_update().order_by("-version").first()
        return TenantDataKey.objects.for_tenant(tenant_id).create(
            version=(last.version + 1) if last else 1,
            wrapped_key=wrap(Fernet.generate_key()),
            master_key_id=current_master_id(),
            created_under=current_master_id(),
        )


def encrypt(data_key, plaintext: str) -> str:
    return _data_fernet(data_key).encrypt(plaintext.encode()).decode()


def decrypt(data_key, ciphertext: str) -> str:
    try:
        return _data_fernet(data_key).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError("A stored secret cannot be decrypted with its tenant's data key.") from None


@dataclass(slots=True)
class RotationResult:
    data_keys_rewrapped: int = 0
    data_keys_created: int = 0
    credentials_reencrypted: int = 0
    field_values_reencrypted: int = 0


def rotate(*, data_keys: bool = False, batch_size: int = 100, progress=None) -> RotationResult:
    """Re-wrap every data key under the newest master key; with `data_keys`, also replace every tenant's
    data key and re-encrypt its credentials. Each row commits on its own, so an interrupted run resumes."""
    result = RotationResult()
    newest = current_master_id()
    while True:
        ids = list(
            TenantDataKey.objects.unscoped()
            .exclude(master_key_id=newest)
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        for pk in ids:
            with transaction.atomic():
                key = TenantDataKey.objects.unscoped().select_for_update().get(pk=pk)
                if key.master_key_id == newest:
                    continue
                key.wrapped_key = rewrap(key.wrapped_key)
                key.master_key_id = newest
                key.save(update_fields=["wrapped_key", "master_key_id"])
                result.data_keys_rewrapped += 1
        if progress:
            progress(result)
    if data_keys:
        # A tenant whose current data key was created under an older master key gets a new one, and its
        # credentials move to it, in one transaction per tenant; tenants already done are skipped.
        tenant_ids = sorted(
            set(
                TenantDataKey.objects.unscoped()
                .filter(retired_at__isnull=True)
                .exclude(created_under=newest)
                .values_list("tenant_id", flat=True)
            )
        )
        for tenant_id in tenant_ids:
            with transaction.atomic():
                old = list(
                    TenantDataKey.objects.for_tenant(tenant_id)
                    .select_for_update()
                    .filter(retired_at__isnull=True)
                    .order_by("-version")
                )
                if not old or old[0].created_under == newest:
                    continue
                fresh = TenantDataKey.objects.for_tenant(tenant_id).create(
                    version=old[0].version + 1,
                    wrapped_key=wrap(Fernet.generate_key()),
                    master_key_id=newest,
                    created_under=newest,
                )
                result.data_keys_created += 1
                for cred in (
                    Credential.objects.for_tenant(tenant_id)
                    .select_for_update(of=("self",))
                    .select_related("data_key")
                    .exclude(data_key=fresh)
                ):
                    plaintext = (
                        decrypt(cred.data_key, cred.secrets_ciphertext) if cred.secrets_ciphertext else ""
                    )
                    cred.secrets_ciphertext = encrypt(fresh, plaintext) if plaintext else ""
                    cred.data_key = fresh
                    cred.save(update_fields=["secrets_ciphertext", "data_key"])
                    result.credentials_reencrypted += 1
                # Nothing refers to the old keys any more: drop them, so a leaked copy of one opens nothing new.
                TenantDataKey.objects.for_tenant(tenant_id).filter(pk__in=[k.pk for k in old]).delete()
            bump_config_version(tenant_id)
            if progress:
                progress(result)
    result.field_values_reencrypted = rotate_field_values(batch_size=batch_size)
    with _lock:
        _data_keys.clear()
    return result


# --- other apps' django-cryptography fields ------------------------------------------------------------


_field_fernets: dict[str, Any] = {}


def _field_fernet(raw_key: str):
    """django-cryptography's cipher for one entry of CRYPTOGRAPHY_KEYS (the key derivation its settings use),
    derived once per key (PBKDF2, 30,000 rounds)."""
    cached = _field_fernets.get(raw_key)
    if cached is None:
        cached = _field_fernets[raw_key] = _derive_field_fernet(raw_key)
    return cached


def _derive_field_fernet(raw_key: str):
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
    from django.utils.encoding import force_bytes
    from django_cryptography.conf import CryptographyConf
    from django_cryptography.utils.crypto import FernetBytes

    conf = CryptographyConf()
    digest = conf.DIGEST
    kdf = PBKDF2HMAC(
        algorithm=digest,
        length=digest.digest_size,
        salt=force_bytes(conf.SALT),
        iterations=30000,
        backend=conf.BACKEND,
    )
    return FernetBytes(kdf.derive(raw_key.encode()))


def encrypted_fields() -> list[tuple[Any, Any]]:
    """(model, field) of every django-cryptography `encrypt(...)` field in the project."""
    from django.apps import apps
    from django_cryptography.fields import EncryptedMixin

    return [
        (model, f)
        for model in apps.get_models()
        for f in model._meta.concrete_fields
        if isinstance(f, EncryptedMixin)
    ]


def rotate_field_values(*, batch_size: int = 200) -> int:
    """Re-encrypt django-cryptography field values under the newest key; values already under it are kept.

    Such a field decrypts with one key only, so this must run before the old key leaves CRYPTOGRAPHY_KEYS.
    """
    import pickle

    from django.db import connection

    raw_keys = tuple(k for k in settings.CRYPTOGRAPHY_KEYS if k)
    newest = _field_fernet(raw_keys[0])
    changed = 0
    for model, field in encrypted_fields():
        table, column, pk = model._meta.db_table, field.column, model._meta.pk.column
        qn = connection.ops.quote_name
        last = None
        while True:
            with connection.cursor() as cursor:
                where = f"WHERE {qn(column)} IS NOT NULL" + (
                    f" AND {qn(pk)} > %s" if last is not None else ""
                )
                cursor.execute(
                    f"SELECT {qn(pk)}, {qn(column)} FROM {qn(table)} {where} "  # noqa: S608
                    f"ORDER BY {qn(pk)} LIMIT %s",
                    [*([last] if last is not None else []), batch_size],
                )
                rows = cursor.fetchall()
            if not rows:
                break
            for row_pk, value in rows:
                last = row_pk
                found = _field_decrypt(bytes(value), raw_keys)
                if found is not None and found[0] > 0:
                    plain = found[1]
                    pickle.loads(plain)  # noqa: S301 - our own ciphertext, authenticated above
                    with transaction.atomic(), connection.cursor() as cursor:
                        cursor.execute(
                            f"UPDATE {qn(table)} SET {qn(column)} = %s WHERE {qn(pk)} = %s",  # noqa: S608
                            [newest.encrypt(plain), row_pk],
                        )
                    changed += 1
    return changed


def _field_decrypt(token: bytes, raw_keys: tuple[str, ...]) -> tuple[int, bytes] | None:
    """(index in CRYPTOGRAPHY_KEYS of the key that decrypts a django-cryptography value, the plaintext), or None
    when no key does."""
    for index, raw in enumerate(raw_keys):
        try:
            return index, _field_fernet(raw).decrypt(token)
        except (InvalidToken, FieldInvalidToken, ValueError):  # wrong key: try the next one
            continue
    return None


# --- can the configured keys read what is stored? ------------------------------------------------------

_KEYS_CHANGED = (
    "Was SECRET_KEY or CRYPTOGRAPHY_KEYS changed without keeping the old key after the new one? Put it back "
    "(new key first, old after), then run `manage.py rotate_encryption_key`."
)
_readable: set[tuple[str, ...]] = set()


def unreadable_secrets() -> str | None:
    """Why the stored secrets cannot be read with CRYPTOGRAPHY_KEYS, or None when they can: the newest tenant data
    key must unwrap, and the newest value of each django-cryptography field must decrypt with the first key (such
    a field reads with that key only). `/readyz` asks, so a deployment with the wrong keys never takes traffic
    (every call that touches a secret would fail). A pass is remembered for the process's keys: what is written
    later is written under them."""
    from django.db import connection

    raw_keys = tuple(k for k in settings.CRYPTOGRAPHY_KEYS if k)
    if raw_keys in _readable:
        return None
    if not raw_keys:
        return "CRYPTOGRAPHY_KEYS is empty: set at least one key."
    newest = TenantDataKey.objects.unscoped().order_by("-pk").values_list("wrapped_key", flat=True).first()
    if newest is not None:
        try:
            unwrap(newest)
        except DecryptionError:
            return f"Tenant data keys cannot be unwrapped with any key in CRYPTOGRAPHY_KEYS. {_KEYS_CHANGED}"
    qn = connection.ops.quote_name
    for model, field in encrypted_fields():
        table, column, pk = model._meta.db_table, field.column, model._meta.pk.column
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {qn(column)} FROM {qn(table)} WHERE {qn(column)} IS NOT NULL "  # noqa: S608
                f"ORDER BY {qn(pk)} DESC LIMIT 1"
            )
            row = cursor.fetchone()
        if row is None:
            continue
        found = _field_decrypt(bytes(row[0]), raw_keys)
        label = f"{model._meta.label}.{field.name}"
        if found is None:
            return f"Stored values of {label} cannot be decrypted with any key in CRYPTOGRAPHY_KEYS. {_KEYS_CHANGED}"
        if found[0] > 0:
            return (
                f"Stored values of {label} are still under an older key of CRYPTOGRAPHY_KEYS and read with the "
                "first one only: run `manage.py rotate_encryption_key`."
            )
    _readable.add(raw_keys)
    return None
