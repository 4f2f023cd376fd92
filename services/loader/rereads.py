"""Reading again what lanes spilled, and only that.

A lane with no room spills a record: it is not kept, and its partition is read again
from it once the lane has room (`lanes.py`). But reading a partition again from a
spilled record reads everything after it too: other tenants' records, and the tenant's
own that were kept, written or dead-lettered the first time. Taking those again wrote
them twice (at 300 tenants x 1,000 items, most of a first sync's last records went to
their targets twice, and the sync's tail took longer than its first 95 %).

So each partition with a record spilled keeps a *window*: one bit per offset from its
first spilled record to the furthest record read, set while the record at that offset
is spilled. Read again, a record whose bit is clear was taken the first time and is
passed over; one whose bit is set is taken now (and may be spilled again). A window
costs an eighth of a byte per record read past a spill (300,000 records: 37 KB), and
goes once nothing in it is spilled and the reading is past its end.

Seeks: a partition is sought back to the lowest offset asked; the offset stays held
(`holds`) until it is read again, so a crash meanwhile loses nothing (a new owner reads
everything again from the committed offset: the windows live in memory only).

The run loop reads a batch again when its outputs could not be committed
(`rewound`): the records the batch took are taken again (their dead letters, target
ids and states were not written), and a partition sought back further by the failed
step is sought there again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from confluent_kafka import Message, TopicPartition

from services.common.offsets import first_offsets
from services.common.records import coordinates

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class Window:
    """One partition's spilled records, as bits from `start` (a multiple of 8) up to the
    last one spilled: offsets below `end` were read at least once; `position` is past the
    last one read."""

    __slots__ = ("bits", "end", "position", "spilled", "start")

    def __init__(self, offset: int) -> None:
        self.start = offset - offset % 8
        self.end = self.position = offset + 1  # (the record at `offset` was read)
        self.bits = bytearray()
        self.spilled = 0  # bits set

    def take(self, offset: int) -> bool:
        """Whether the record at `offset` is to be taken: read for the first time (or
        before the window), or spilled when it was last read (its bit is cleared)."""
        self.position = offset + 1
        if offset < self.start:
            return True
        if offset >= self.end:
            self.end = offset + 1
            return True
        index, mask = divmod(offset - self.start, 8)
        bit = 1 << mask
        if index >= len(self.bits) or not self.bits[index] & bit:
            return False  # (past the last byte: no bit set there)
        self.bits[index] &= ~bit
        self.spilled -= 1
        return True

    def spill(self, offset: int) -> None:
        """The record at `offset` was not kept: taken again when read again."""
        if offset < self.start:  # (read before the window began: taken, bits clear)
            grown = (self.start - offset + 7) // 8
            self.bits[:0] = bytes(grown)
            self.start -= grown * 8
        self._cover(offset)
        index, mask = divmod(offset - self.start, 8)
        bit = 1 << mask
        if not self.bits[index] & bit:
            self.bits[index] |= bit
            self.spilled += 1

    def done(self) -> bool:
        """Nothing spilled left, and the reading past the window's end: not needed."""
        return self.spilled == 0 and self.position >= self.end

    def trim(self) -> None:
        """Forget the bytes before the first spilled record (all taken), but not those
        a reading again has still to pass: forgotten, they would be taken again."""
        if self.bits and self.bits[0] == 0:
            passed = max(0, self.position - self.start) // 8  # (reading before it: none)
            clear = min(len(self.bits) - len(self.bits.lstrip(b"\0")), passed)
            del self.bits[:clear]
            self.start += clear * 8

    def _cover(self, offset: int) -> None:
        needed = (offset - self.start) // 8 + 1
        if needed > len(self.bits):
            self.bits.extend(bytes(needed - len(self.bits)))


class Rereads:
    def __init__(self, seek: Callable[[TopicPartition], None] | None = None) -> None:
        """`seek`: the consumer's (None: only remembered, as in tests without one)."""
        self.seek = seek
        self._windows: dict[Partition, Window] = {}
        self._sought: dict[Partition, int] = {}  # sought back to, not read again yet
        self._took: list[Message] = []  # taken in the current batch (run loop rewinds)

    def batch(self) -> None:
        """A new batch begins: the last one's outputs were committed."""
        self._took.clear()
        for where, window in list(self._windows.items()):
            if window.done() and where not in self._sought:
                del self._windows[where]
        for window in self._windows.values():
            window.trim()

    def take(self, msg: Message) -> bool:
        """Whether `msg` is to be taken: False when it was taken on an earlier read of
        its partition (it is read again only for records spilled near it)."""
        topic, partition, offset = coordinates(msg)
        sought = self._sought.get((topic, partition))
        if sought is not None and offset >= sought:
            del self._sought[topic, partition]  # read again: held by its lane now
        window = self._windows.get((topic, partition))
        if window is not None and not window.take(offset):
            return False
        self._took.append(msg)
        return True

    def spill(self, msg: Message) -> None:
        topic, partition, offset = coordinates(msg)
        window = self._windows.get((topic, partition))
        if window is None:
            window = self._windows[topic, partition] = Window(offset)
        window.spill(offset)

    def read_again(self, seeks: dict[Partition, int]) -> None:
        """Seek each partition back to its offset, never forward: not past one sought
        already and not read again yet, nor past where a reading again has got to (it
        reaches the offset by itself; a seek would skip what lies between)."""
        for (topic, partition), asked in seeks.items():
            offset = min(asked, self._sought.get((topic, partition), asked))
            window = self._windows.get((topic, partition))
            if window is not None and offset >= window.position:
                self._sought[topic, partition] = offset  # held until read
                continue
            log.info(
                "reading %s[%d] again from %d (records a tenant had no room for)",
                topic,
                partition,
                offset,
            )
            self._sought[topic, partition] = offset
            if self.seek is not None:
                self.seek(TopicPartition(topic, partition, offset))

    def rewound(self, batch: Sequence[Message]) -> None:
        """The run loop reads `batch` again from its first records (its outputs were not
        committed): what it took is taken again, and a partition this step sought back
        further is sought there again (the run loop's seek replaced it)."""
        for msg in self._took:
            topic, partition, offset = coordinates(msg)
            window = self._windows.get((topic, partition))
            if window is not None:
                window.spill(offset)
        self._took.clear()
        for tp in first_offsets(batch):
            sought = self._sought.get((tp.topic, tp.partition))
            if sought is not None and sought < tp.offset and self.seek is not None:
                self.seek(TopicPartition(tp.topic, tp.partition, sought))

    def holds(self, low: dict[Partition, int]) -> None:
        """Lower `low` to the offsets sought back to and not read again yet."""
        for where, offset in self._sought.items():
            if offset < low.get(where, offset + 1):
                low[where] = offset

    def revoked(self, gone: set[Partition]) -> None:
        """Partitions no longer this loader's: their new owner reads them from the
        committed offset (everything after it taken again, as after a crash)."""
        for where in gone:
            self._sought.pop(where, None)
            self._windows.pop(where, None)

    def window_bytes(self) -> int:
        return sum(len(window.bits) for window in self._windows.values())
