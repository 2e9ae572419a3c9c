"""The lake's lifecycle: how long each zone is kept, and when raw photos move to cheaper storage.

The rules (days and storage classes from `COLORFLOW_LIFECYCLE_*`, `LifecycleSettings`):

- `raw/` moves to STANDARD_IA after 30 days and to GLACIER_IR after 180: photos are read when a dataset is
  stitched and rarely later; the archive class retrieves instantly, so a rebuild still reads them directly.
- `quarantine/` is deleted after 90 days: long enough for a person to look, and for the audit to restore a
  raw object from its copy.
- `reports/` (quality and audit reports) is deleted after 365 days.
- `checkpoints/` objects tagged `colorflow-retention=intermediate` are deleted after 30 days. A run that trains
  all its steps tags every checkpoint but its last, the one a model is registered from (`models.train`); a
  run stopped by SIGTERM tags nothing, so it can still be resumed.
- multipart uploads of the lake never completed have their parts thrown away after 7 days: the parts of a
  writer that died cost storage and show in no listing.

One set of `Rule` objects serves both kinds of lake. On S3 they become the bucket's lifecycle configuration
(`apply_rules`) and S3 does the work, tier moves included. The rules are named and filtered by the lake's key
prefix, and the bucket's other rules (another lake, MLflow's artifacts) are kept, because S3 holds one
configuration per bucket. A folder has no lifecycle engine: `expire` does there what S3 does with the expiries,
and the `lake_housekeeping` DAG runs it every day. A folder has no storage classes either, so tier moves do
nothing there, and `expire` says so. Both are idempotent: applying the same rules again changes nothing.

Ages count from an object's writing (S3's `Days`; a file's time of modification), for a checkpoint too: an
intermediate checkpoint of a run that trained for longer than 30 days goes on the first pass after its run
finishes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipelines.raw_zone import QUARANTINE_PREFIX, RAW_PREFIX
from pipelines.settings import LifecycleSettings, get_settings
from pipelines.storage import ObjectNotFound, ObjectStore, S3Store, open_store

logger = logging.getLogger(__name__)

# What a finished training run sets on the checkpoints it no longer needs (models.train).
RETENTION_TAG = "colorflow-retention"
INTERMEDIATE_CHECKPOINT_TAGS = {RETENTION_TAG: "intermediate"}
# S3 rule IDs are `colorflow:<lake prefix>/<rule name>`: how this lake's rules are told from the bucket's others.
RULE_ID_PREFIX = "colorflow:"
# What S3 servers answer to rules they cannot keep: MinIO to a storage class it has no tier for, and to a rule
# whose only action is to abort unfinished uploads (it drops those itself after a day); AWS to days its storage
# classes do not allow (STANDARD_IA before 30 days, a later move less than 30 days after it).
REFUSALS = ("InvalidStorageClass", "MalformedXML", "InvalidArgument")


class RulesRefused(RuntimeError):
    """The bucket refused the rules: a setting must change, retrying cannot help."""


@dataclass(frozen=True)
class Transition:
    """A move to another storage class, `days` after an object's writing."""

    days: int
    storage_class: str


@dataclass(frozen=True)
class Rule:
    """What happens to the lake's objects under `prefix` that carry every tag of `tags`."""

    name: str
    prefix: str  # a lake key prefix; "" is the whole lake
    expire_days: int | None = None
    transitions: tuple[Transition, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    unfinished_upload_days: int | None = None  # for the lake's multipart uploads, not its objects

    def selection(self) -> str:
        """What the rule applies to, for a person."""
        selected = self.prefix or "the whole lake"
        if self.tags:
            selected += " tagged " + ", ".join(f"{name}={value}" for name, value in self.tags.items())
        return selected

    def describe(self) -> str:
        """One line for a person: what the rule selects and what it does."""
        actions = [f"to {move.storage_class} after {move.days} days" for move in self.transitions]
        if self.expire_days is not None:
            actions.append(f"deleted after {self.expire_days} days")
        if self.unfinished_upload_days is not None:
            actions.append(f"unfinished multipart uploads thrown away after {self.unfinished_upload_days} days")
        return f"{self.selection()}: {', '.join(actions)}"

    def s3_rule(self, root: str) -> dict:
        """The rule as S3's lifecycle configuration spells it, for a lake whose keys start with `root`."""
        prefix = root + self.prefix
        rule: dict = {"ID": f"{RULE_ID_PREFIX}{root}{self.name}", "Status": "Enabled"}
        if self.tags:
            tags = [{"Key": name, "Value": value} for name, value in self.tags.items()]
            rule["Filter"] = {"And": {"Prefix": prefix, "Tags": tags}}
        else:
            rule["Filter"] = {"Prefix": prefix}
        if self.transitions:
            rule["Transitions"] = [{"Days": move.days, "StorageClass": move.storage_class} for move in self.transitions]
        if self.expire_days is not None:
            rule["Expiration"] = {"Days": self.expire_days}
        if self.unfinished_upload_days is not None:
            rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": self.unfinished_upload_days}
        return rule


def lake_rules(settings: LifecycleSettings) -> list[Rule]:
    """The lake's rules with the days and storage classes of `settings`."""
    rules = []
    if settings.tiers:
        moves = (
            Transition(settings.infrequent_access_days, settings.infrequent_access_class),
            Transition(settings.archive_days, settings.archive_class),
        )
        rules.append(Rule("raw-tiers", f"{RAW_PREFIX}/", transitions=moves))
    rules += [
        Rule("quarantine", f"{QUARANTINE_PREFIX}/", expire_days=settings.quarantine_days),
        Rule("reports", "reports/", expire_days=settings.reports_days),
        # models.train.checkpoint_prefix: checkpoints/<run id>/
        Rule(
            "intermediate-checkpoints",
            "checkpoints/",
            expire_days=settings.intermediate_checkpoint_days,
            tags=INTERMEDIATE_CHECKPOINT_TAGS,
        ),
    ]
    if settings.unfinished_upload_days:
        rules.append(Rule("unfinished-uploads", "", unfinished_upload_days=settings.unfinished_upload_days))
    return rules


def describe(rules: Sequence[Rule]) -> str:
    return "\n".join(f"  {rule.describe()}" for rule in rules)


# -- S3: the bucket applies the rules -----------------------------------------------------------------------


def _root(store: S3Store) -> str:
    return f"{store.prefix}/" if store.prefix else ""


def s3_rules(store: S3Store, rules: Sequence[Rule]) -> list[dict]:
    """`rules` as lifecycle rules of `store`'s bucket, under its key prefix."""
    return [rule.s3_rule(_root(store)) for rule in rules]


def _is_this_lakes(rule: dict, root: str) -> bool:
    name = rule.get("ID", "").removeprefix(f"{RULE_ID_PREFIX}{root}")
    return name != rule.get("ID", "") and "/" not in name


def apply_rules(store: S3Store, rules: Sequence[Rule]) -> list[dict]:
    """Make the bucket's lifecycle configuration hold `rules` for this lake, in place of the lake's earlier rules
    (a rule a setting turned off goes), keeping every rule of the bucket that is not this lake's. Returns the
    bucket's rules read back."""
    from botocore.exceptions import ClientError

    others = [rule for rule in store.lifecycle_rules() if not _is_this_lakes(rule, _root(store))]
    try:
        store.set_lifecycle_rules(others + s3_rules(store, rules))
    except ClientError as error:
        answer = error.response.get("Error", {})
        if answer.get("Code") not in REFUSALS:
            raise
        raise RulesRefused(
            f"bucket {store.bucket} refused the lifecycle rules: {answer.get('Code')}: {answer.get('Message')}."
            " Change the COLORFLOW_LIFECYCLE_* settings; on MinIO without remote tiers set"
            " COLORFLOW_LIFECYCLE_TIERS=false and COLORFLOW_LIFECYCLE_UNFINISHED_UPLOAD_DAYS=0"
        ) from error
    logger.info("lifecycle rules of %s applied to bucket %s:\n%s", store.url, store.bucket, describe(rules))
    return store.lifecycle_rules()


# -- a folder: housekeeping does what S3 would ---------------------------------------------------------------


def expire(
    store: ObjectStore, rules: Sequence[Rule], *, now: datetime | None = None, dry_run: bool = False
) -> dict[str, int]:
    """Delete what `rules` expire: objects under a rule's prefix, with its tags, written more than its days ago;
    unfinished writes started more than its days ago. Returns how many each rule deleted (or, with `dry_run`,
    would delete)."""
    now = now or datetime.now(UTC)
    verb = "would delete" if dry_run else "deleted"
    deleted = {}
    for rule in rules:
        if rule.transitions:
            moves = ", ".join(f"{move.storage_class} after {move.days} days" for move in rule.transitions)
            logger.info("%s: storage tiers (%s) do not exist on a folder lake; nothing moves", rule.prefix, moves)
        count = 0
        if rule.expire_days is not None:
            written_before = now - timedelta(days=rule.expire_days)
            for entry in store.entries(rule.prefix):
                if entry.modified < written_before and _carries(store, entry.key, rule.tags):
                    if not dry_run:
                        store.delete(entry.key)
                    count += 1
            logger.info(
                "%s: %s %d objects of %s written more than %d days ago",
                rule.name,
                verb,
                count,
                rule.selection(),
                rule.expire_days,
            )
        if rule.unfinished_upload_days is not None:
            started_before = now - timedelta(days=rule.unfinished_upload_days)
            for write in store.unfinished_writes():
                if write.started_at < started_before:
                    if not dry_run:
                        store.discard(write)
                    count += 1
            logger.info(
                "%s: %s %d unfinished writes started more than %d days ago",
                rule.name,
                verb,
                count,
                rule.unfinished_upload_days,
            )
        if rule.expire_days is not None or rule.unfinished_upload_days is not None:
            deleted[rule.name] = count
    return deleted


def _carries(store: ObjectStore, key: str, tags: Mapping[str, str]) -> bool:
    if not tags:
        return True
    try:
        held = store.tags(key)
    except ObjectNotFound:  # deleted meanwhile
        return False
    return all(held.get(name) == value for name, value in tags.items())


def keep_house(store: ObjectStore, settings: LifecycleSettings) -> dict[str, int]:
    """The daily upkeep (DAG lake_housekeeping): an S3 lake gets its lifecycle configuration again, so a changed
    setting takes effect; a folder lake has what the rules expire deleted now. Returns counts for the task log."""
    rules = lake_rules(settings)
    if isinstance(store, S3Store):
        return {"rules applied": len(s3_rules(store, rules)), "bucket rules": len(apply_rules(store, rules))}
    return expire(store, rules)


# -- colorflow lake lifecycle --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`colorflow lake lifecycle`; its help ends with the rules as the current settings make them."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "the rules with the current settings:\n" + describe(lake_rules(get_settings().lifecycle))
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the rules as they would be applied and change nothing (with --expire-now: count what would go)",
    )
    parser.add_argument(
        "--show", action="store_true", help="print the lifecycle rules the bucket holds now, read back from it"
    )
    parser.add_argument(
        "--expire-now",
        action="store_true",
        help="file:// lake: delete what the rules expire now, as the lake_housekeeping DAG does every day",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Apply the rules to an S3 lake's bucket (or print them, or what the bucket holds); on a folder lake, print
    them and, with --expire-now, do the expiries."""
    settings = get_settings()
    store = open_store(settings=settings)
    rules = lake_rules(settings.lifecycle)
    if not isinstance(store, S3Store):
        return _run_on_folder(store, rules, args)
    if args.expire_now:
        print(
            f"{store.url} is in S3, whose lifecycle rules expire objects: --expire-now is for a file:// lake",
            file=sys.stderr,
        )
        return 2
    if args.show:
        print(json.dumps(store.lifecycle_rules(), indent=2, default=str))
    elif args.dry_run:
        print(f"would apply to bucket {store.bucket} (dry run, nothing changed):\n{describe(rules)}")
        print(json.dumps(s3_rules(store, rules), indent=2))
    else:
        try:
            bucket_rules = apply_rules(store, rules)
        except RulesRefused as refused:
            print(refused, file=sys.stderr)
            return 1
        print(f"applied to bucket {store.bucket} ({len(bucket_rules)} rules in all, read back):\n{describe(rules)}")
    return 0


def _run_on_folder(store: ObjectStore, rules: Sequence[Rule], args: argparse.Namespace) -> int:
    print(
        f"{store.url} is a folder: no storage service applies lifecycle rules to it.\n"
        "The lake_housekeeping DAG deletes what these rules expire every day (a folder has no storage tiers):"
    )
    print(describe(rules))
    if args.show:
        print("a folder holds no lifecycle configuration to read back")
    if not args.expire_now:
        print("colorflow lake lifecycle --expire-now does the expiries now (add --dry-run to count first)")
        return 0
    deleted = expire(store, rules, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb}: " + ", ".join(f"{count} by {name}" for name, count in deleted.items()))
    return 0
