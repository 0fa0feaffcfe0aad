"""The online migration: ``sync``, ``status``, ``cutover`` and ``abort``.

The source keeps taking writes while PostgreSQL's own logical replication carries them to the
target, starting from exactly the instant the copy read (the copy's snapshot is exported by the
very replication slot the subscription then streams from). The switch is a short freeze of the
source's writes, a wait for the target to apply the last of them, sequences set, a check, and the
replication objects removed.

One module per phase; SQL lives next to the phase that owns it, and what several phases share
(the replication objects, the freeze, the schema fingerprint, the state record) has a module each.
Kept free of imports so that ``import rdsmigrate.online.x`` loads only what ``x`` needs.
"""
