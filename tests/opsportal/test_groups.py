"""Defaults seeded after migrate: permission groups and periodic tasks, idempotently."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from opsportal.seeding import MANAGED_APPS, READ_ONLY_APPS, collect_periodic_specs, seed_defaults

pytestmark = pytest.mark.django_db

EDIT_VERBS = ("add", "change", "delete")


def codenames(group_name: str) -> set[str]:
    """Return ``app_label.codename`` for every permission of the group."""
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def model_perms(app_label: str, verbs: tuple[str, ...]) -> set[str]:
    perms = Permission.objects.filter(content_type__app_label=app_label).select_related("content_type")
    return {f"{app_label}.{p.codename}" for p in perms if p.codename.split("_", 1)[0] in verbs}


def test_migrate_creates_the_three_default_groups():
    assert set(Group.objects.values_list("name", flat=True)) >= {"Viewers", "On-call", "Editors"}


def test_viewers_can_only_view_our_apps():
    perms = codenames("Viewers")

    assert perms, "Viewers has no permissions at all"
    assert {p for p in perms if not p.split(".", 1)[1].startswith("view_")} == set()
    assert {p.split(".", 1)[0] for p in perms} <= set(MANAGED_APPS)
    # Every model of our apps can be looked at, including the schedules.
    assert model_perms("monitoring", ("view",)) <= perms
    assert model_perms("django_celery_beat", ("view",)) <= perms
    assert not any(p.startswith(("auth.", "axes.", "sessions.")) for p in perms)


def test_editors_edit_schedules_and_monitoring_but_never_the_audit_log():
    perms = codenames("Editors")

    assert "django_celery_beat.change_periodictask" in perms
    assert model_perms("django_celery_beat", EDIT_VERBS) <= perms
    assert model_perms("monitoring", EDIT_VERBS) <= perms
    # The audit log is append-only: nobody edits it by hand, whatever models it gains.
    assert "audit" in READ_ONLY_APPS
    assert {p for p in perms if p.startswith("audit.") and p.split(".", 1)[1].split("_", 1)[0] in EDIT_VERBS} == set()
    # Editors also see everything Viewers see.
    assert codenames("Viewers") <= perms
    # User management stays with superusers.
    assert not any(p.startswith("auth.") for p in perms)


def test_on_call_sees_everything_viewers_see_and_edits_no_configuration():
    perms = codenames("On-call")

    assert codenames("Viewers") <= perms
    assert model_perms("django_celery_beat", EDIT_VERBS) & perms == set()
    assert model_perms("monitoring", EDIT_VERBS) & perms == set()


def test_seeding_again_creates_no_duplicates():
    groups_before = sorted(Group.objects.values_list("name", flat=True))
    tasks_before = sorted(PeriodicTask.objects.values_list("name", flat=True))
    intervals_before = IntervalSchedule.objects.count()
    perms_before = {name: codenames(name) for name in ("Viewers", "On-call", "Editors")}

    seed_defaults()
    seed_defaults()

    assert sorted(Group.objects.values_list("name", flat=True)) == groups_before
    assert sorted(PeriodicTask.objects.values_list("name", flat=True)) == tasks_before
    assert IntervalSchedule.objects.count() == intervals_before
    assert {name: codenames(name) for name in ("Viewers", "On-call", "Editors")} == perms_before


def test_every_declared_periodic_task_is_seeded_once():
    specs = collect_periodic_specs()
    assert specs, "no app declares periodic tasks"
    for spec in specs:
        assert PeriodicTask.objects.filter(name=spec["name"]).count() == 1
        assert PeriodicTask.objects.get(name=spec["name"]).task == spec["task"]


def test_operator_edit_of_a_seeded_task_survives_a_second_seed():
    task = PeriodicTask.objects.filter(name__in=[s["name"] for s in collect_periodic_specs()]).first()
    assert task is not None
    slower = IntervalSchedule.objects.create(every=3600, period=IntervalSchedule.SECONDS)
    task.interval = slower
    task.enabled = False
    task.expire_seconds = 1800
    task.description = "operator: run hourly during the migration"
    task.save()

    seed_defaults()

    task.refresh_from_db()
    assert task.interval_id == slower.pk
    assert task.enabled is False
    assert task.expire_seconds == 1800
    assert task.description == "operator: run hourly during the migration"


def test_deleted_seeded_task_comes_back_on_the_next_seed():
    name = collect_periodic_specs()[0]["name"]
    PeriodicTask.objects.filter(name=name).delete()

    seed_defaults()

    assert PeriodicTask.objects.filter(name=name).count() == 1


def test_every_seeded_periodic_task_expires_before_its_next_run():
    names = [spec["name"] for spec in collect_periodic_specs()]
    tasks = list(PeriodicTask.objects.filter(name__in=names).select_related("interval"))
    assert len(tasks) == len(names)
    for task in tasks:
        assert task.interval is not None, f"{task.name} has no interval"
        every = task.interval.schedule.run_every.total_seconds()
        assert task.expire_seconds is not None, f"{task.name} never expires"
        assert 0 < task.expire_seconds < every, (
            f"{task.name}: expires after {task.expire_seconds}s, runs every {every}s"
        )


def test_permission_an_operator_removed_from_a_group_stays_removed_after_migrate():
    viewers = Group.objects.get(name="Viewers")
    perm = viewers.permissions.get(codename="view_periodictask")
    viewers.permissions.remove(perm)

    seed_defaults()

    assert not Group.objects.get(name="Viewers").permissions.filter(pk=perm.pk).exists()
    # ...while a group that lost nothing still has it.
    assert Group.objects.get(name="Editors").permissions.filter(pk=perm.pk).exists()
