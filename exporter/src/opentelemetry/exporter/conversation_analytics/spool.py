"""A bounded on-disk spool: events the collector acknowledged but could not yet write.

Each batch becomes one segment file, written to a temporary name, fsynced and renamed, so a
segment is either whole or absent after a crash. Segments are replayed oldest first when the store
is reachable again, and at start; replays are idempotent because every event keeps its id.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from opentelemetry.exporter.conversation_analytics.rows import (
    EventRow,
    row_from_values,
    row_values,
)

DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
_SUFFIX: Final = ".jsonl"


class DiskSpool:
    """Append-only segments in ``directory``, at most ``max_bytes`` in all."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES):
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._sequence = 0
        #: The last append did not fit (cleared by the next one that does, or by a drain).
        self.refused = False
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink()  # a batch interrupted mid-write was never acknowledged
        self._sizes = {path: path.stat().st_size for path in self._list()}
        self._counts = {path: _count_lines(path) for path in self._sizes}

    def _list(self) -> list[Path]:
        return sorted(self.directory.glob("segment-*" + _SUFFIX))

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def events(self) -> int:
        return sum(self._counts.values())

    def segments(self) -> list[Path]:
        """Segments, oldest first."""
        with self._lock:
            return sorted(self._sizes)

    def append(self, rows: Sequence[EventRow]) -> bool:
        """Durably store ``rows`` as one segment; False (nothing written) when it would not fit."""
        data = "".join(
            json.dumps(row_values(row), ensure_ascii=False, separators=(",", ":")) + "\n"
            for row in rows
        ).encode("utf-8")
        with self._lock:
            if self.bytes + len(data) > self.max_bytes:
                self.refused = True
                return False
            self.refused = False
            self._sequence += 1
            name = f"segment-{time.time_ns():020d}-{os.getpid()}-{self._sequence:06d}"
            final = self.directory / (name + _SUFFIX)
            temporary = self.directory / (name + ".tmp")
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
            _fsync_directory(self.directory)
            self._sizes[final] = len(data)
            self._counts[final] = len(rows)
            return True

    def read(self, segment: Path) -> list[EventRow]:
        with open(segment, encoding="utf-8") as handle:
            return [row_from_values(json.loads(line)) for line in handle if line.strip()]

    def remove(self, segment: Path) -> None:
        with self._lock:
            segment.unlink(missing_ok=True)
            self._sizes.pop(segment, None)
            self._counts.pop(segment, None)
            self.refused = False  # room again: let a retry find out


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
