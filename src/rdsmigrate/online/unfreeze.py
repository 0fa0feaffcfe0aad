"""``rdsmigrate unfreeze``: reopen the source database for writes, unless that splits the brain.

After a finished cutover the source stays frozen on purpose; after an interrupted one the tool
unfreezes it itself, and this command is for when it could not (the source unreachable at that
moment) or for rolling back to the source on purpose.

The danger is reopening a source whose target a cutover has detached: the application may write
to the target, and two writable copies diverge. Whether that happened is recorded on the target
(:mod:`.state`), so the command reads it there (``--target``) and refuses then, unless ``--force``.
Without ``--target`` it cannot know, and only ``--force`` makes it go ahead.
"""

from __future__ import annotations

from pydantic import BaseModel

from rdsmigrate.db.connect import Endpoint, connect
from rdsmigrate.errors import UserError
from rdsmigrate.online import freeze, state
from rdsmigrate.progress import Reporter


class UnfreezeReport(BaseModel):
    source: str
    was_frozen: bool
    unfrozen: bool
    migration: str | None
    """The migration recorded on the target, when ``--target`` was given."""
    forced_past_detach: bool

    def render(self, reporter: Reporter) -> None:
        text = (f"the source {self.source} was unfrozen: new sessions may write again"
                if self.unfrozen else f"the source {self.source} was not frozen: nothing to do")
        if self.forced_past_detach:
            text += ("; the cutover had detached the target (--force): keep the application "
                     "writing to ONE of the two databases")
        reporter.console.print(text, markup=False, highlight=False)


def run(source: Endpoint, target: Endpoint | None, *, force: bool,
        reporter: Reporter) -> UnfreezeReport:
    record = None
    if target is not None:
        with connect(target, autocommit=True) as tgt:
            record = state.latest(tgt)
    detached = record is not None and record.detached
    with connect(source, autocommit=True) as src:
        freeze.writable(src)
        frozen = freeze.is_frozen(src)
        if frozen and not force:
            if target is None:
                raise UserError(
                    "unfreeze needs --target to check that no cutover detached the target (the "
                    "application may write there: two writable copies would diverge); or pass "
                    "--force to reopen the source regardless")
            if detached:
                assert record is not None
                raise UserError(
                    f"the cutover of {record.name} detached the target {record.target}: the "
                    "application may be writing there, and reopening the source makes two "
                    "writable copies that diverge. To reopen it on purpose (a rollback to the "
                    "source), rerun with --force")
        if frozen:
            freeze.unfreeze(src, source.dbname)
    if record is not None and record.frozen and target is not None:
        record.frozen = False
        with connect(target, autocommit=True) as tgt:
            state.save(tgt, record)
    if frozen:
        reporter.info(f"unfroze {source.describe()}")
    return UnfreezeReport(source=source.describe(), was_frozen=frozen, unfrozen=frozen,
                          migration=record.name if record else None,
                          forced_past_detach=frozen and detached and force)
