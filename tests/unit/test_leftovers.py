"""backup.leftovers' pure decisions: which incomplete multipart uploads a backup aborts as leftovers of killed runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backup.keys import backup_key
from backup.leftovers import MIN_AGE, is_idle, leftover_uploads

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
OLD = NOW - MIN_AGE - timedelta(seconds=1)


def upload(key: str, upload_id: str, initiated: datetime = OLD) -> dict:
    return {"Key": key, "UploadId": upload_id, "Initiated": initiated}


def ids(uploads: list[dict]) -> list[str]:
    return [u["UploadId"] for u in uploads]


def test_an_old_upload_of_this_database_that_no_checkpoint_refers_to_is_a_leftover() -> None:
    killed = upload(backup_key("", "app", NOW - timedelta(days=1)), "killed")
    assert ids(leftover_uploads([killed], "app", "", set(), NOW)) == ["killed"]


def test_an_upload_started_within_the_hour_is_kept_it_may_be_a_running_backup() -> None:
    young = upload(backup_key("", "app", NOW), "young", initiated=NOW - MIN_AGE + timedelta(seconds=1))
    assert leftover_uploads([young], "app", "", set(), NOW) == []
    just_old = upload(backup_key("", "app", NOW), "just-old", initiated=NOW - MIN_AGE)
    assert ids(leftover_uploads([just_old], "app", "", set(), NOW)) == ["just-old"]


def test_an_upload_any_checkpoint_refers_to_is_kept() -> None:
    # this server's checkpoint, or another server's for a database of the same name: continued later
    mine = upload(backup_key("", "app", NOW - timedelta(days=1)), "in-my-checkpoint")
    theirs = upload(backup_key("", "app", NOW - timedelta(days=2)), "in-another-servers-checkpoint")
    dead = upload(backup_key("", "app", NOW - timedelta(days=3)), "dead")
    found = leftover_uploads([mine, theirs, dead], "app", "", {"in-my-checkpoint", "in-another-servers-checkpoint"}, NOW)
    assert ids(found) == ["dead"]


def test_only_keys_that_are_this_databases_backups_under_this_prefix_count() -> None:
    when = NOW - timedelta(days=1)
    uploads = [
        upload(backup_key("nightly/", "app", when), "mine"),
        upload(backup_key("nightly/", "app_x", when), "a-database-whose-name-starts-with-app_"),
        upload(backup_key("", "nightly/app", when), "database-nightly/app-without-a-prefix"),  # nightly%2Fapp_...
        upload(backup_key("nightly/old/", "app", when), "a-deeper-prefix"),
        upload("nightly/app_notes.txt", "not-a-backup-key"),
        upload("nightly/app.checkpoint.host.json", "not-a-backup-key-either"),
        upload(backup_key("nightly/", "app", when) + ".manifest.json", "a-manifest-key"),
    ]
    assert ids(leftover_uploads(uploads, "app", "nightly/", set(), NOW)) == ["mine"]


def test_an_earlier_versions_raw_slash_spelling_is_never_taken_for_a_leftover() -> None:
    # `team/app_<time>_backup.txt` is database `team/app` of an earlier version, or database `app` under the prefix
    # `team/` today, whose checkpoint this run does not read: not this run's to abort
    when = NOW - timedelta(days=1)
    legacy = upload(f"team/app_{when.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}_backup.txt", "ambiguous")
    encoded = upload(backup_key("", "team/app", when), "encoded")
    assert ids(leftover_uploads([legacy, encoded], "team/app", "", set(), NOW)) == ["encoded"]


def test_an_upload_without_a_start_time_is_kept() -> None:
    assert leftover_uploads([{"Key": backup_key("", "app", OLD), "UploadId": "x"}], "app", "", set(), NOW) == []


def test_an_upload_is_idle_when_no_part_was_uploaded_within_the_hour() -> None:
    assert is_idle([], NOW)
    assert is_idle([{"PartNumber": 1, "LastModified": OLD}, {"PartNumber": 2, "LastModified": OLD}], NOW)
    # a backup without a deadline that runs for hours keeps uploading parts: not idle
    assert not is_idle([{"PartNumber": 1, "LastModified": OLD},
                        {"PartNumber": 2, "LastModified": NOW - timedelta(minutes=5)}], NOW)
    assert not is_idle([{"PartNumber": 1}], NOW)  # no time known: kept
