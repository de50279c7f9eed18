"""Local names for generated code: spec names are kept, generated names never collide."""

from __future__ import annotations

import keyword


class Names:
    """Allocates unique local names in one generated function's scope."""

    def __init__(self, taken: set[str] | None = None) -> None:
        self.taken: set[str] = set(taken or ())
        self.of: dict[str, str] = {}  # value id -> local name
        self._next: dict[str, int] = {}  # base name -> next suffix to try

    def fork(self) -> "Names":
        """A child scope that starts with this scope's names."""
        child = Names(self.taken)
        child.of = dict(self.of)
        child._next = dict(self._next)
        return child

    def snapshot(self) -> tuple[set[str], dict[str, str], dict[str, int]]:
        """This scope's state, to ``restore`` it (to render one piece of code twice)."""
        return set(self.taken), dict(self.of), dict(self._next)

    def restore(self, state: tuple[set[str], dict[str, str], dict[str, int]]) -> None:
        self.taken, self.of, self._next = set(state[0]), dict(state[1]), dict(state[2])

    def fresh(self, hint: str) -> str:
        """A name based on ``hint`` that is not yet taken (``hint``, ``hint_2``, ...)."""
        base = hint if hint.isidentifier() and not keyword.iskeyword(hint) else "t"
        name, k = base, self._next.get(base, 1)
        if name in self.taken:
            k = max(k, 2)
            name = f"{base}_{k}"
            while name in self.taken:
                k += 1
                name = f"{base}_{k}"
            self._next[base] = k + 1
        self.taken.add(name)
        return name

    def bind(self, vid: str, hint: str) -> str:
        """Give value ``vid`` a fresh local name (once)."""
        if vid not in self.of:
            self.of[vid] = self.fresh(hint)
        return self.of[vid]
