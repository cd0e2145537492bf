"""Channel secrets at rest: encrypted in the database, readable with any listed key, masked when shown."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test import override_settings

from alerts.fields import UndecryptableSecret, mask, reencrypt
from alerts.models import NotificationChannel

URL = "http://127.0.0.1:9000/hooks/T0KEN-abcdef123456"
SECRET = "hmac-secret-7f3e9a1a2b"


def raw_row(channel: NotificationChannel) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT target, secret FROM alerts_notificationchannel WHERE id = %s", [channel.pk])
        return cursor.fetchone()


@pytest.mark.django_db
def test_target_and_secret_are_not_in_the_database_in_clear() -> None:
    channel = NotificationChannel.objects.create(name="ops-hook", kind="webhook", target=URL, secret=SECRET)

    target_column, secret_column = raw_row(channel)

    assert URL not in target_column and "T0KEN" not in target_column
    assert SECRET not in secret_column
    assert target_column.startswith("gAAAAA") and secret_column.startswith("gAAAAA")
    reloaded = NotificationChannel.objects.get(pk=channel.pk)
    assert (reloaded.target, reloaded.secret) == (URL, SECRET)


@pytest.mark.django_db
def test_an_unset_secret_stays_empty() -> None:
    channel = NotificationChannel.objects.create(name="mail", kind="email", target="oncall@example.com")

    assert raw_row(channel)[1] == ""
    assert NotificationChannel.objects.get(pk=channel.pk).secret == ""


@pytest.mark.django_db
def test_rotation_new_key_first_reads_old_rows_and_reencrypt_lets_the_old_key_go() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(FERNET_KEYS=[old]):
        channel = NotificationChannel.objects.create(name="ops-hook", kind="webhook", target=URL, secret=SECRET)
    token_before = raw_row(channel)[0]

    with override_settings(FERNET_KEYS=[new, old]):
        reloaded = NotificationChannel.objects.get(pk=channel.pk)
        assert reloaded.target == URL  # the old key still decrypts
        assert reencrypt(reloaded) == ["target", "secret"]

    token_after = raw_row(channel)[0]
    assert token_after != token_before
    with override_settings(FERNET_KEYS=[new]):
        assert NotificationChannel.objects.get(pk=channel.pk).target == URL
        assert NotificationChannel.objects.get(pk=channel.pk).secret == SECRET


@pytest.mark.django_db
def test_a_value_no_key_decrypts_raises_an_error_naming_the_channel_not_garbage() -> None:
    with override_settings(FERNET_KEYS=[Fernet.generate_key().decode()]):
        NotificationChannel.objects.create(name="ops-hook", kind="webhook", target=URL)

    with override_settings(FERNET_KEYS=[Fernet.generate_key().decode()]):
        channel = NotificationChannel.objects.get(name="ops-hook")  # loading the row works
        with pytest.raises(UndecryptableSecret) as error:
            channel.target  # noqa: B018

    message = str(error.value)
    assert "'ops-hook'" in message and "target" in message and "OPSPORTAL_FERNET_KEYS" in message
    assert URL not in message


@pytest.mark.django_db
def test_saving_other_fields_keeps_a_token_that_cannot_be_decrypted_untouched() -> None:
    with override_settings(FERNET_KEYS=[Fernet.generate_key().decode()]):
        channel = NotificationChannel.objects.create(name="ops-hook", kind="webhook", target=URL)
    token = raw_row(channel)[0]

    with override_settings(FERNET_KEYS=[Fernet.generate_key().decode()]):
        loaded = NotificationChannel.objects.get(pk=channel.pk)
        loaded.enabled = False
        loaded.save()

    assert raw_row(channel)[0] == token
    assert NotificationChannel.objects.get(pk=channel.pk).enabled is False


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("http://127.0.0.1:9000/hooks/T0KEN", "http://127.0.0.1:9000/…"),
        ("https://user:pw@hooks.example.com/services/T000/B000/XXXX?x=1", "https://hooks.example.com/…"),
        ("oncall@example.com", "o•••@example.com"),
        ("oncall@example.com, boss@example.org", "o•••@example.com (+1)"),
        ("hmac-secret-7f3e9a1a2b", "••••1a2b"),
        ("short", "••••"),
        ("", ""),
    ],
)
def test_mask_shows_a_hint_never_the_secret(secret: str, shown: str) -> None:
    assert mask(secret) == shown
    if secret:
        assert "T0KEN" not in mask(secret) and "pw" not in mask(secret)
