"""Defaults installed after ``migrate``: periodic tasks and permission groups.

Both are idempotent and never overwrite what an operator edited: periodic tasks are
``get_or_create``d by name (a deleted one comes back: disable it instead), and a
group gets each default permission once (one an operator removed stays removed).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.apps import apps as global_apps
from django.db import transaction

logger = logging.getLogger(__name__)

#: Apps whose permissions the default groups are built from.
MANAGED_APPS = ("monitoring", "alerts", "backups", "audit", "django_celery_beat")
#: Apps whose rows nobody edits by hand (append-only or written by processes).
READ_ONLY_APPS = ("audit",)
#: Permissions that let on-call staff act on alerts without editing configuration.
ON_CALL_CODENAMES = (
    "acknowledge_alert",
    "add_silence",
    "change_silence",
    "delete_silence",
    "view_silence",
)
GROUPS = ("Viewers", "On-call", "Editors")


def seed_defaults(sender: Any = None, **kwargs: Any) -> None:
    """post_migrate handler: seed periodic tasks and groups."""
    created = seed_periodic_tasks(collect_periodic_specs())
    seed_groups()
    if created:
        logger.info("seeded %d default periodic tasks", created)


def collect_periodic_specs() -> list[dict[str, Any]]:
    """Return every app's ``periodic_tasks`` declarations."""
    specs: list[dict[str, Any]] = []
    for config in global_apps.get_app_configs():
        specs.extend(getattr(config, "periodic_tasks", ()))
    return specs


def seed_periodic_tasks(specs: list[dict[str, Any]]) -> int:
    """Create the periodic tasks that do not exist yet; return how many were created.

    ``expire_seconds`` defaults to 80 % of the interval, so a backlog never replays.
    """
    from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

    created = 0
    with transaction.atomic():
        for spec in specs:
            every = int(spec["every_seconds"])
            # The interval table has no unique constraint: filter().first(), not get().
            interval = IntervalSchedule.objects.filter(every=every, period=IntervalSchedule.SECONDS).first()
            if interval is None:
                interval = IntervalSchedule.objects.create(every=every, period=IntervalSchedule.SECONDS)
            _, was_created = PeriodicTask.objects.get_or_create(
                name=spec["name"],
                defaults={
                    "task": spec["task"],
                    "interval": interval,
                    "expire_seconds": spec.get("expire_seconds", max(1, int(every * 0.8))),
                    "queue": spec.get("queue"),
                    "kwargs": json.dumps(spec.get("kwargs", {})),
                    "description": spec.get("description", ""),
                    "enabled": spec.get("enabled", True),
                },
            )
            created += was_created
        if created:
            PeriodicTasks.update_changed()
    return created


def seed_groups() -> None:
    """Create Viewers, On-call and Editors and give each default permission once."""
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    from monitoring.models import InstalledDefault

    # post_migrate reaches ``opsportal`` before the apps listed after it in
    # INSTALLED_APPS, whose permissions would not exist yet on a fresh database:
    # create them now (idempotent) so the groups are complete after the first migrate.
    for config in global_apps.get_app_configs():
        if config.label in MANAGED_APPS:
            create_permissions(config, verbosity=0, interactive=False)
    perms = list(Permission.objects.filter(content_type__app_label__in=MANAGED_APPS).select_related("content_type"))
    viewing = [p for p in perms if p.codename.startswith("view_")]
    on_call = viewing + [p for p in perms if p.codename in ON_CALL_CODENAMES]
    editing = on_call + [
        p
        for p in perms
        if p.content_type.app_label not in READ_ONLY_APPS and p.codename.split("_", 1)[0] in {"add", "change", "delete"}
    ]
    wanted = {"Viewers": viewing, "On-call": on_call, "Editors": editing}
    with transaction.atomic():
        done = set(InstalledDefault.objects.filter(key__startswith="group:").values_list("key", flat=True))
        new_keys: list[str] = []
        for name in GROUPS:
            group, _ = Group.objects.get_or_create(name=name)
            fresh = {f"group:{name}:{p.content_type.app_label}.{p.codename}": p for p in wanted[name]}
            fresh = {key: perm for key, perm in fresh.items() if key not in done}
            # Only permissions never given before: one an operator removed stays removed.
            group.permissions.add(*fresh.values())
            new_keys.extend(fresh)
        InstalledDefault.objects.bulk_create([InstalledDefault(key=k) for k in new_keys], ignore_conflicts=True)
