"""Secrets at rest: a text field stored as a Fernet token, and a mask for showing one.

The keys are ``settings.FERNET_KEYS`` (``OPSPORTAL_FERNET_KEYS``, newest first): new
values are encrypted with the first key, and any listed key decrypts, so a key is
rotated by putting the new one in front and keeping the old one until every row was
saved again (:func:`reencrypt`).

A value is decrypted when the attribute is read, not when the row is loaded: one row
whose key was lost does not break a list of channels, and reading that one value
raises :class:`UndecryptableSecret` naming the object and the field instead of
returning garbage. Saving an object without touching its secrets writes the stored
token back unchanged.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models
from django.db.models.query_utils import DeferredAttribute


class UndecryptableSecret(ValueError):
    """A stored secret that none of the configured Fernet keys decrypts."""


class Ciphertext(str):
    """A token as read from the database, not yet decrypted."""

    __slots__ = ()


@functools.lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    """Return a MultiFernet over the configured keys, newest (encrypting) key first."""
    return _fernet(tuple(settings.FERNET_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Return the plaintext of ``token``; raise ``InvalidToken`` when no key fits."""
    return fernet().decrypt(token.encode("ascii")).decode("utf-8")


class _DecryptingAttribute(DeferredAttribute):
    """Decrypt on attribute access, so the error can name the object it belongs to.

    A data descriptor (it has ``__set__``): the instance ``__dict__`` holds the raw
    value, and every read comes through ``__get__``.
    """

    field: EncryptedTextField

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Ciphertext):
            return self.field.decrypt_for(instance, value)
        return value


class EncryptedTextField(models.TextField):
    """A text field whose non-empty values are stored as Fernet tokens.

    The empty string is stored as is (an unset optional secret). Lookups other than
    ``isnull`` / ``exact=""`` are meaningless on the token and are not supported.
    """

    descriptor_class = _DecryptingAttribute

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        return Ciphertext(value)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        # Read the raw slot, not the attribute: an untouched secret goes back to the
        # database as the same token, without being decrypted (which could fail).
        if self.attname in model_instance.__dict__:
            return model_instance.__dict__[self.attname]
        return super().pre_save(model_instance, add)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "" or isinstance(value, Ciphertext):
            return value
        return encrypt(str(value))

    def to_python(self, value: Any) -> Any:
        if isinstance(value, Ciphertext):
            return value
        return super().to_python(value)

    def decrypt_for(self, instance: models.Model, token: str) -> str:
        try:
            return decrypt(token)
        except (InvalidToken, ValueError, UnicodeError):
            meta = instance._meta
            raise UndecryptableSecret(
                f"{meta.verbose_name} {str(instance)!r}: the stored {self.verbose_name} cannot be decrypted "
                "with OPSPORTAL_FERNET_KEYS (was it encrypted with a key that is no longer listed?); "
                "enter the value again"
            ) from None

    def is_readable(self, instance: models.Model) -> bool:
        """Return False when the stored value cannot be decrypted with the current keys."""
        try:
            getattr(instance, self.attname)
        except UndecryptableSecret:
            return False
        return True


def reencrypt(instance: models.Model) -> list[str]:
    """Re-encrypt ``instance``'s encrypted fields with the newest key; return the fields saved.

    Call it for every row after putting a new key first in ``OPSPORTAL_FERNET_KEYS``;
    then the old key can be dropped.
    """
    names = []
    for field in instance._meta.concrete_fields:
        if isinstance(field, EncryptedTextField):
            raw = instance.__dict__.get(field.attname)
            if isinstance(raw, Ciphertext):
                instance.__dict__[field.attname] = Ciphertext(fernet().rotate(raw.encode("ascii")).decode("ascii"))
                names.append(field.attname)
    if names:
        instance.save(update_fields=names)
    return names


_EMAIL = re.compile(r"^([^@\s,]+)@([^@\s,]+)$")


def mask(secret: str | None) -> str:
    """Return a short hint of ``secret`` that is safe to show: never the secret itself.

    URLs keep their scheme, host and port (``http://127.0.0.1:9000/…``), addresses
    their first letter and domain (``o•••@example.com``), anything else its last four
    characters when it is long enough for that to give nothing away (``••••1a2b``).
    """
    if not secret:
        return ""
    text = secret.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return "••••"
        if ":" in host:
            host = f"[{host}]"
        return f"{parts.scheme}://{host}{port}/…"
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    if addresses and all(_EMAIL.match(a) for a in addresses):
        first = _EMAIL.match(addresses[0])
        assert first is not None
        hint = f"{first.group(1)[0]}•••@{first.group(2)}"
        return hint if len(addresses) == 1 else f"{hint} (+{len(addresses) - 1})"
    if len(text) >= 16:
        return f"••••{text[-4:]}"
    return "••••"
