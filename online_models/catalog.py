"""The item catalogue as fed by the compacted `items` topic."""
from __future__ import annotations

from dataclasses import dataclass

NEW_ITEMS_KEPT = 50
# "New" is event time, not arrival order: an item is new for this long after it was first
# described, and only if it was described after the first event (the catalogue loaded before
# any traffic is where the shop started, not news).
NEW_WINDOW_MS = 7 * 24 * 3600_000


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    category: str | None = None
    tags: tuple[str, ...] = ()
    available: bool = True


class Catalog:
    """Known items. Items never described are assumed available and uncategorised, so the
    engine works on interaction data alone; a removed (tombstoned) item is never recommended."""

    def __init__(self) -> None:
        self._items: dict[str, Item] = {}
        self._removed: set[str] = set()
        self.version = 0  # bumps on every change; lets models notice new items cheaply
        self.clock = 0    # newest event time the engines reading this catalogue have learned (0: none yet)
        self._added: dict[str, int] = {}      # item -> clock when first described (0: starting catalogue)
        self._new: dict[str, list[str]] = {}  # category ("" = all) -> newest items, newest last
        self._members: dict[str, set[str]] = {}     # category ("" = all) -> items
        self._sorted: dict[str, list[str]] = {}     # cache of sorted(_members[c]), dropped on change
        # What content affinity reads: item -> the number of its (category, tags) combination
        self.content_ids: dict[str, int] = {}
        self.combinations: list[tuple[str | None, tuple[str, ...]]] = []  # by number
        self._combination_ids: dict[tuple, int] = {}

    def observe(self, ts: int) -> None:
        """Advance the event-time clock that dates new items (called for every learned event)."""
        if ts > self.clock:
            self.clock = ts

    def upsert(self, record: dict) -> Item:
        item = Item(
            item_id=record["item_id"],
            category=record.get("category") or None,
            tags=tuple(record.get("tags") or ()),
            available=bool(record.get("available", True)),
        )
        old = self._items.get(item.item_id)
        self._items[item.item_id] = item
        combination = (item.category, item.tags)
        number = self._combination_ids.get(combination)
        if number is None:
            number = self._combination_ids[combination] = len(self.combinations)
            self.combinations.append(combination)
        self.content_ids[item.item_id] = number
        self._removed.discard(item.item_id)
        if old is None or old.category != item.category:
            if old is not None:
                self._leave(old)
            for scope in ("", item.category) if item.category else ("",):
                self._members.setdefault(scope, set()).add(item.item_id)
                self._sorted.pop(scope, None)
        if old is None and item.item_id not in self._added:
            self._added[item.item_id] = self.clock
            if self.clock:  # item cold start: a new item is a candidate the moment it is described
                for scope in ("", item.category) if item.category else ("",):
                    fresh = self._new.setdefault(scope, [])
                    fresh.append(item.item_id)
                    del fresh[:-NEW_ITEMS_KEPT]
        self.version += 1
        return item

    def remove(self, item_id: str) -> None:
        old = self._items.pop(item_id, None)
        self.content_ids.pop(item_id, None)
        if old is not None:
            self._leave(old)
        self._removed.add(item_id)
        self.version += 1

    def _leave(self, item: Item) -> None:
        for scope in ("", item.category) if item.category else ("",):
            self._members.get(scope, set()).discard(item.item_id)
            self._sorted.pop(scope, None)

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    def category(self, item_id: str) -> str | None:
        item = self._items.get(item_id)
        return item.category if item is not None else None

    def is_recommendable(self, item_id: str) -> bool:
        item = self._items.get(item_id)
        if item is None:
            return item_id not in self._removed
        return item.available

    def restricts(self) -> bool:
        """Whether any item could be unrecommendable (described or removed items exist)."""
        return bool(self._items or self._removed)

    def is_new(self, item_id: str, now: int) -> bool:
        """Described after the first event and at most NEW_WINDOW_MS of event time before `now`."""
        added = self._added.get(item_id, 0)
        return bool(added) and item_id in self._items and now - added < NEW_WINDOW_MS

    def new_items(self, category: str | None = None, now: int | None = None) -> list[str]:
        """The most recently added items (of a category), newest first; with `now`, only those
        still new at that event time."""
        fresh = self._new.get(category or "", [])[::-1]
        if now is None:
            return fresh
        return [i for i in fresh if self.is_new(i, now)]

    def members(self, category: str | None = None) -> list[str]:
        """Every described item (of a category) in item-id order: a fixed order whatever order
        the `items` partitions were read in."""
        scope = category or ""
        out = self._sorted.get(scope)
        if out is None:
            out = self._sorted[scope] = sorted(self._members.get(scope, ()))
        return out

    def items(self) -> list[Item]:
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)
