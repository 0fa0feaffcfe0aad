"""``rdsmigrate abort``: remove every replication object the tool created, on both sides.

From the record on the target (:mod:`.state`) and always also by name (every object is named
``rdsmigrate_...``), so a lost record or a crash between creating an object and recording it leaves
nothing behind: a forgotten slot holds the source's WAL until its disk fills.

Found by name only, a slot or publication could belong to another migration of the same source
(to another target): a slot that a walsender is using right now is left alone, and so is the
publication of the same name, unless the record or the target's subscription says it is ours.

The one rule about the freeze: once a cutover has detached the target (dropped the subscription,
recorded in the same transaction), ``abort`` NEVER unfreezes the source: the application may be
writing to the target, and a writable source would make two diverging copies. It says how to
reopen the source on purpose. Before that point it unfreezes the source when this tool froze it
(recorded), or when the record is gone, our subscription still exists and the source is frozen
(a cutover interrupted while frozen, by an older version).

Every drop tolerates a concurrent finish (a killed cutover's last statement may still complete).
What it leaves: the target's copied tables and data (drop the database to discard them), the
record (phase ``aborted``), and the REPLICA IDENTITY FULL that ``sync`` set with consent.
"""

from __future__ import annotations

from pydantic import BaseModel

from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.online import freeze, replication, state
from rdsmigrate.online.settings import AbortOptions
from rdsmigrate.progress import Reporter


class AbortReport(BaseModel):
    subscriptions: list[str]
    slots: list[str]
    publications: list[str]
    left_in_use: list[str]
    """Objects named like ours but in use by a replication this run could not tie to us."""
    unfrozen: bool
    detached: bool = False
    """A cutover had detached the target: the source was left as it was (frozen)."""
    source_frozen: bool = False
    reopen_command: str | None = None
    replica_identity_full: list[str]

    def render(self, reporter: Reporter) -> None:
        def line(text: str) -> None:
            reporter.console.print(text, markup=False, highlight=False)

        dropped = [f"subscription {n}" for n in self.subscriptions] + [
            f"slot {n}" for n in self.slots] + [f"publication {n}" for n in self.publications]
        line("removed: " + (", ".join(dropped) if dropped else "nothing (no object of ours left)"))
        if self.unfrozen:
            line("the source database was unfrozen (writes accepted again)")
        if self.detached and self.source_frozen:
            line("the cutover had detached the target, so the source stays frozen (two writable "
                 "copies would diverge); to reopen it on purpose: rdsmigrate unfreeze --source ... "
                 f"--target ... --force, or {self.reopen_command}")
        for n in self.left_in_use:
            line(f"left alone: {n} is in use by a live replication not recorded as ours; drop it "
                 "by hand if it is yours")
        if self.replica_identity_full:
            line("REPLICA IDENTITY FULL stays on " + ", ".join(self.replica_identity_full)
                 + " (ALTER TABLE .. REPLICA IDENTITY DEFAULT to undo)")


def run(source: Endpoint, target: Endpoint, options: AbortOptions, reporter: Reporter) -> AbortReport:
    cache = state.location(options.state_dir, target)
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        freeze.writable(src)
        record = state.latest(tgt)
        found = replication.find(src, tgt)
        detached = record is not None and record.detached
        ours = set(found.subscriptions) | ({record.name} if record else set())
        active = {r[0] for r in src.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE active AND slot_name LIKE %s",
            [replication.NAME_LIKE]).fetchall()}
        temporary = {r[0] for r in src.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE temporary").fetchall()}
        # Unfrozen before anything is dropped: the subscription still existing is what proves
        # the target was never detached.
        unfrozen = False
        if not detached and freeze.is_frozen(src) and (
                (record is not None and record.frozen)
                or (record is None and bool(found.subscriptions))):
            freeze.unfreeze(src, source.dbname)
            unfrozen = True
        subs = [n for n in found.subscriptions if replication.drop_subscription(tgt, n)]
        # A copy of our publication that pg_dump carried to the target (sync drops it at once;
        # a sync interrupted in between leaves it).
        copied = [r[0] for r in tgt.execute("SELECT pubname FROM pg_publication WHERE pubname "
                                            "LIKE %s", [replication.NAME_LIKE]).fetchall()]
        pubs_target = [n for n in copied if replication.drop_publication(tgt, n)]
        skipped = sorted((active - ours) & (set(found.slots) | set(found.publications)))
        slots = [n for n in found.slots
                 if n not in skipped and n not in temporary and replication.drop_slot(src, n)]
        pubs = [n for n in found.publications
                if n not in skipped and replication.drop_publication(src, n)]
        source_frozen = freeze.is_frozen(src)
        reopen = freeze.unfreeze_command(source.dbname)
        if detached and source_frozen:
            # The application writes to the target now: reopening the old database is a decision
            # for the user, not a side effect of cleaning up.
            reporter.warn("the cutover detached the target, so the source stays frozen; to reopen "
                          f"it on purpose: rdsmigrate unfreeze --force, or {reopen}")
        if record is not None and not detached:
            record.phase = "aborted"
            record.frozen = False
            state.save(tgt, record, cache)
    report = AbortReport(subscriptions=subs, slots=slots, publications=pubs + pubs_target,
                         left_in_use=[f"slot/publication {n}" for n in skipped], unfrozen=unfrozen,
                         detached=detached, source_frozen=source_frozen,
                         reopen_command=reopen if detached and source_frozen else None,
                         replica_identity_full=record.replica_identity_full if record else [])
    reporter.info(f"abort: {len(subs)} subscription(s), {len(slots)} slot(s), {len(pubs)} "
                  "publication(s) removed")
    return report
