"""The advisory lock replicas share: what one process holds, another sees; death releases it."""

from __future__ import annotations

import sqlalchemy

from rag.db.locks import AdvisoryLock


def _engines(url: str) -> tuple[sqlalchemy.Engine, sqlalchemy.Engine]:
    return sqlalchemy.create_engine(url), sqlalchemy.create_engine(url)


def test_shared_holders_keep_others_from_the_exclusive_lock(pg_url: str) -> None:
    one, two = _engines(pg_url)
    a, b, c = AdvisoryLock(one, 7), AdvisoryLock(two, 7), AdvisoryLock(two, 8)
    with a.hold(shared=True), a.hold(shared=True):  # re-entrant
        assert not b.try_exclusive()
        assert c.try_exclusive()  # another key is another lock
        c.release()
        with b.hold(shared=True):  # shared holders share
            pass
    assert b.try_exclusive()
    assert not a.try_exclusive()
    b.release()
    assert a.try_exclusive()
    a.release()
    one.dispose()
    two.dispose()


def test_a_dead_holders_lock_is_gone(pg_url: str) -> None:
    one, two = _engines(pg_url)
    holder = AdvisoryLock(one, 9)
    held = holder.hold(shared=True)
    held.__enter__()
    assert not AdvisoryLock(two, 9).try_exclusive()
    # The holder's process dies: its connection closes without unlocking.
    holder._local.conn.invalidate()
    one.dispose()
    other = AdvisoryLock(two, 9)
    assert other.try_exclusive()
    other.release()
    two.dispose()
