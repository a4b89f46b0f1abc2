"""The item catalogue as fed by the compacted `items` topic."""
from __future__ import annotations

from dataclasses import dataclass

NEW_ITEMS_KEPT = 50


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
        self._new: dict[str, list[str]] = {}  # category ("" = all) -> newest items, newest last

    def upsert(self, record: dict) -> Item:
        item = Item(
            item_id=record["item_id"],
            category=record.get("category") or None,
            tags=tuple(record.get("tags") or ()),
            available=bool(record.get("available", True)),
        )
        is_new = item.item_id not in self._items
        self._items[item.item_id] = item
        self._removed.discard(item.item_id)
        if is_new:  # item cold start: a new item is a candidate the moment it is described
            for scope in ("", item.category) if item.category else ("",):
                fresh = self._new.setdefault(scope, [])
                fresh.append(item.item_id)
                del fresh[:-NEW_ITEMS_KEPT]
        self.version += 1
        return item

    def remove(self, item_id: str) -> None:
        self._items.pop(item_id, None)
        self._removed.add(item_id)
        self.version += 1

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

    def new_items(self, category: str | None = None) -> list[str]:
        """The most recently added items (of a category), newest first."""
        return self._new.get(category or "", [])[::-1]

    def items(self) -> list[Item]:
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)
