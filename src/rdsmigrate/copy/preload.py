"""What the copy's forkserver imports before it forks any worker (and nothing else does).

The workers' module, then :func:`gc.freeze`: every object imported so far moves to a generation
the collector never walks. A forked worker shares these pages with the forkserver until something
writes to them, and a collection writes to the header of every object it walks, so without the
freeze each worker ends up with a private copy of most of psycopg's and the standard library's
objects.
"""

import gc

from rdsmigrate.copy import workers  # noqa: F401  (imported to be shared)

gc.freeze()
