"""Crash-state engines: which media images to check at each fence epoch.

Six engines carry pmreorder's names and meanings (PMDK ``reorderengines.py``). Like
pmreorder they work on the atoms *flushed* in the epoch, never apply unflushed stores,
and skip the stores after the last fence:

=============================  ===============================================  ==========
engine                         states per epoch with k flushed atoms            k=4
=============================  ===============================================  ==========
NoReorderNoCheck               none (checks nothing -- pmreorder's default)     0
NoReorderDoCheck               all k in program order                           1
ReorderAccumulative            the k+1 program-order prefixes, ``()`` included  5
ReorderReverseAccumulative     the k+1 prefixes of the reversed list            5
ReorderPartial                 ``max_seq`` (3) seeded samples of combinations   3
ReorderFull                    every permutation of every length                65
=============================  ===============================================  ==========

Two engines explore the persistency model itself (:mod:`pmemsim.persistence.model`):
every in-flight atom, flushed or not, may or may not be on media, per 8-byte word as a
program-order prefix, including after the last fence:

* :class:`Exhaustive` -- every distinct media image of every epoch. Images differ only
  in their words, so the distinct images are the product of each word's distinct
  values; they are visited in mixed-radix Gray-code order (one word changes per
  state). Images already seen in an earlier epoch are not checked again, so the
  states checked are exactly the distinct images.
* :class:`Random` -- ``n`` seeded random images per epoch, deduplicated the same way.

Engines are chosen for the whole log or per marker section (``markers={"tx": ...}``),
by instance or by name (:func:`engine_from_name`). Each engine drives an
:class:`~pmemsim.persistence.explore.Explorer`, which applies and undoes atoms on the
image in place and runs the checker; randomness comes from ``random.Random`` seeded by
(seed, epoch), so results never depend on how epochs are split across workers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from pmemsim.persistence.model import Atom, Epoch

if TYPE_CHECKING:
    from pmemsim.persistence.explore import Explorer

__all__ = [
    "ENGINES",
    "Engine",
    "Exhaustive",
    "NoReorderDoCheck",
    "NoReorderNoCheck",
    "Random",
    "ReorderAccumulative",
    "ReorderFull",
    "ReorderPartial",
    "ReorderReverseAccumulative",
    "engine_from_name",
]


def epoch_rng(name: str, seed: int, epoch: int) -> random.Random:
    """The random stream of one engine in one epoch: independent of workers and of other epochs."""
    return random.Random(f"{name}:{seed}:{epoch}")


@dataclass(frozen=True)
class Engine:
    """Base of the engines: ``explore`` calls ``ex.check()`` once per crash state of an epoch.

    ``model_based`` engines explore every in-flight atom and the final (unfenced) epoch;
    the pmreorder engines explore the flushed atoms of fenced epochs only. ``dedup``
    engines skip images already checked (the state is then not counted).
    """

    name: ClassVar[str] = "Engine"
    model_based: ClassVar[bool] = False
    dedup: ClassVar[bool] = False

    def universe(self, epoch: Epoch) -> tuple[Atom, ...]:
        """The atoms this engine may apply in ``epoch``."""
        return epoch.inflight if self.model_based else epoch.flushed

    def wants(self, epoch: Epoch) -> bool:
        """Whether ``epoch`` is explored at all."""
        return self.model_based or not epoch.final

    def estimate(self, epoch: Epoch) -> int:
        """About how many states ``explore`` visits (used to balance work across processes)."""
        return 1

    def explore(self, epoch: Epoch, ex: Explorer, seed: int) -> None:
        """Visit the crash states of ``epoch``; the image is at the epoch's durable base on entry and exit."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class NoReorderNoCheck(Engine):
    """pmreorder's default: replays stores in order and checks nothing."""

    name: ClassVar[str] = "NoReorderNoCheck"

    def wants(self, epoch: Epoch) -> bool:
        """Never: this engine checks nothing."""
        return False

    def estimate(self, epoch: Epoch) -> int:
        """Zero states."""
        return 0

    def explore(self, epoch: Epoch, ex: Explorer, seed: int) -> None:
        """Nothing to visit."""


@dataclass(frozen=True)
class NoReorderDoCheck(Engine):
    """One state per epoch: every flushed store applied in program order."""

    name: ClassVar[str] = "NoReorderDoCheck"

    def explore(self, epoch: Epoch, ex: Explorer, seed: int) -> None:
        """Apply all flushed atoms, check once."""
        for atom in epoch.flushed:
            ex.push(atom)
        ex.check()


@dataclass(frozen=True)
class ReorderAccumulative(Engine):
    """Every program-order prefix of the flushed stores, the empty one included (k+1 states)."""

    name: ClassVar[str] = "ReorderAccumulative"

    def estimate(self, epoch: Epoch) -> int:
        """k + 1."""
        return len(epoch.flushed) + 1

    def explore(self, epoch: Epoch, ex: Explorer, seed: int) -> None:
        """Check the empty prefix, then add one atom at a time."""
        ex.check()
        for atom in epoch.flushed:
            ex.push(atom)
            ex.check()


@dataclass(frozen=True)
class ReorderReverseAccumulative(Engine):
    """Every prefix of the reversed list of flushed stores (the last store reaches media first)."""

    name: ClassVar[str] = "ReorderReverseAccumulative"

    def estimate(self, epoch: Epoch) -> int:
        """k + 1."""
        return len(epoch.flushed) + 1

    def explore(self, epoch: Epoch, ex: Explorer, seed: int) -> None:
        """Check the empty prefix, then add atoms from the last one backwards."""
        ex.check()
        for atom in reversed(epoch.flushed):
            ex.push(atom)
            ex.check()


@dataclass(frozen=True)
class ReorderFull(Engine):
    """Every permutation of every length of the flushed stores: sum over n of k!/(k-n)! states.

    Visited depth-first (one atom applied or undone per state), so the order differs
    from pmreorder's but the set of sequences is the same. ``max_states_per_epoch``
    stops an epoch early (with a warning in the report); None means no limit. The
    default cap exists because the count explodes: 12 flushed stores in one epoch are
    1.3 billion states, which pmreorder would try to visit for days.
    """

    name: ClassVar[str] = "ReorderFull"
    max_states_per_epoch: int | None = 65536

    def estimate(self, epoch: Epoch) -> int:
        """sum over n of k!/(k-n)!, capped."""
        k = len(epoch.flushed)
        total = sum(math.perm(k, n) for n in range(k + 1))
        return total if self.max_states_per_epoch is None else min(total, self.max_states_per_epoch)

    def explore(self, epoch: Epoch, ex: Explorer, seed: int) -> None:
        """Depth-first over the permutation tree."""
        atoms = epoch.flushed
        used = [False] * len(atoms)
        ex.limit = self.max_states_per_epoch

        def visit() -> None:
            ex.check()
            for i, atom in enumerate(atoms):
                if not used[i]:
                    used[i] = True
                    ex.push(atom)
                    visit()
                    ex.pop()
                    used[i] = False

        visit()


def _comb_unrank(k: int, n: int, rank: int) -> list[int]:
    """The ``rank``-th n-combination of range(k) in itertools.combinations (lexicographic) order."""
    out: list[int] = []
    start = 0
    for remaining in range(n, 0, -1):
        for c in range(start, k):
            block = math.comb(k - c - 1, remaining - 1)
            if rank < block:
                out.append(c)
                start = c + 1
                break
            rank -= block
    return out


@dataclass(frozen=True)
class ReorderPartial(Engine):
    """pmreorder's RandomPartialReorderEngine: ``max_seq`` samples of flushed-store combinations.

    The population is, for every length n, the first 1,000 combinations of n flushed
    stores (itertools order); ``min(max_seq, population)`` of them are drawn without
    replacement. pmreorder draws unseeded; here the draw is seeded by (seed, epoch).
    """

    name: ClassVar[str] = "ReorderPartial"
    max_seq: int = 3

    def estimate(self, epoch: Epoch) -> int:
        """min(max_seq, population)."""
        return min(self.max_seq, self._population(len(epoch.flushed)))

    @staticmethod
    def _population(k: int) -> int:
        return sum(min(math.comb(k, n), 1000) for n in range(k + 1))

    def explore(self, epoch: Epoch, ex: Explorer, seed: int) -> None:
        """Check each sampled combination, applied in program order."""
        atoms = epoch.flushed
        k = len(atoms)
        sizes = [min(math.comb(k, n), 1000) for n in range(k + 1)]
        rng = epoch_rng(self.name, seed, epoch.index)
        for rank in rng.sample(range(sum(sizes)), min(self.max_seq, sum(sizes))):
            n = 0
            while rank >= sizes[n]:
                rank -= sizes[n]
                n += 1
            picked = _comb_unrank(k, n, rank)
            for i in picked:
                ex.push(atoms[i])
            ex.check()
            for _ in picked:
                ex.pop()


class _Words:
    """The in-flight atoms of an epoch grouped by word, with each word's distinct values.

    ``values[j]`` are the distinct contents word j can have on media (index 0 = durable
    base), ``prefix[j][v]`` the shortest prefix of ``atoms[j]`` that produces value v.
    Words whose atoms never change them are dropped: they cannot make images differ.
    """

    def __init__(self, epoch: Epoch, ex: Explorer) -> None:
        grouped: dict[int, list[Atom]] = {}
        for atom in epoch.inflight:
            grouped.setdefault(atom.word, []).append(atom)
        self.fidx: list[int] = []
        self.start: list[int] = []
        self.atoms: list[list[Atom]] = []
        self.values: list[list[bytes]] = []
        self.hashes: list[list[int]] = []
        self.prefix: list[list[int]] = []
        for word_atoms in grouped.values():
            first = word_atoms[0]
            w0 = first.offset - first.offset % 8
            current = bytearray(ex.word(first.fidx, w0))
            values = [bytes(current)]
            prefix = [0]
            for n, atom in enumerate(word_atoms, 1):
                current[atom.offset - w0 : atom.end - w0] = atom.data
                value = bytes(current)
                if value not in values:
                    values.append(value)
                    prefix.append(n)
            if len(values) > 1:
                self.fidx.append(first.fidx)
                self.start.append(w0)
                self.atoms.append(word_atoms)
                self.values.append(values)
                self.hashes.append([ex.word_hash(first.fidx, w0, v) for v in values])
                self.prefix.append(prefix)
        self.radix = [len(v) for v in self.values]
        self.digits = [0] * len(self.radix)
        self.total = math.prod(self.radix)

    def set(self, ex: Explorer, j: int, v: int) -> None:
        """Put value ``v`` into word ``j`` of the image."""
        ex.set_word(
            self.fidx[j], self.start[j], self.values[j][v], self.hashes[j][v] - self.hashes[j][self.digits[j]]
        )
        self.digits[j] = v

    def reset(self, ex: Explorer) -> None:
        """Back to the durable base."""
        for j, v in enumerate(self.digits):
            if v:
                self.set(ex, j, 0)

    def applied(self) -> tuple[Atom, ...]:
        """The atoms that reached media in the current image, in program order."""
        out = [a for j, v in enumerate(self.digits) for a in self.atoms[j][: self.prefix[j][v]]]
        out.sort(key=lambda a: a.id)
        return tuple(out)


def _sample_words(words: _Words, ex: Explorer, rng: random.Random, count: int) -> None:
    for _ in range(count):
        for j, r in enumerate(words.radix):
            v = rng.randrange(r)
            if v != words.digits[j]:
                words.set(ex, j, v)
        ex.check()


def _estimate_words(epoch: Epoch) -> int:
    # An upper bound without touching the image: each word has at most (atoms + 1) values.
    counts: dict[int, int] = {}
    for atom in epoch.inflight:
        counts[atom.word] = counts.get(atom.word, 0) + 1
    return math.prod(c + 1 for c in counts.values())


@dataclass(frozen=True)
class Exhaustive(Engine):
    """Every distinct media image the model allows at every epoch, each checked once.

    An epoch with more than ``max_states_per_epoch`` distinct images is sampled instead
    (that many seeded random images) and the report carries a warning.
    """

    name: ClassVar[str] = "Exhaustive"
    model_based: ClassVar[bool] = True
    dedup: ClassVar[bool] = True
    max_states_per_epoch: int = 1 << 16

    def estimate(self, epoch: Epoch) -> int:
        """The product of per-word value counts, capped."""
        return min(_estimate_words(epoch), self.max_states_per_epoch)

    def explore(self, epoch: Epoch, ex: Explorer, seed: int) -> None:
        """Mixed-radix reflected Gray code over the words (Knuth 7.2.1.1, Algorithm H)."""
        words = _Words(epoch, ex)
        ex.describer = words.applied
        try:
            if words.total > self.max_states_per_epoch:
                ex.warn(
                    f"epoch {epoch.index}: {words.total} distinct images exceed max_states_per_epoch="
                    f"{self.max_states_per_epoch}; checked a seeded random sample of that many"
                )
                _sample_words(words, ex, epoch_rng(self.name, seed, epoch.index), self.max_states_per_epoch)
                return
            radix = words.radix
            m = len(radix)
            a = words.digits
            focus = list(range(m + 1))
            direction = [1] * m
            ex.check()
            while True:
                j = focus[0]
                focus[0] = 0
                if j == m:
                    break
                words.set(ex, j, a[j] + direction[j])
                ex.check()
                if a[j] == 0 or a[j] == radix[j] - 1:
                    direction[j] = -direction[j]
                    focus[j] = focus[j + 1]
                    focus[j + 1] = j + 1
        finally:
            words.reset(ex)


@dataclass(frozen=True)
class Random(Engine):
    """``n`` seeded random images per epoch from the model (each word at a random prefix).

    ``seed`` None takes the seed given to ``replay``. Images already checked are skipped.
    """

    name: ClassVar[str] = "Random"
    model_based: ClassVar[bool] = True
    dedup: ClassVar[bool] = True
    seed: int | None = None
    n: int = 100

    def estimate(self, epoch: Epoch) -> int:
        """n."""
        return self.n

    def explore(self, epoch: Epoch, ex: Explorer, seed: int) -> None:
        """Draw ``n`` images."""
        words = _Words(epoch, ex)
        ex.describer = words.applied
        try:
            rng = epoch_rng(self.name, seed if self.seed is None else self.seed, epoch.index)
            _sample_words(words, ex, rng, self.n)
        finally:
            words.reset(ex)


#: Engine classes by name (pmreorder's names first).
ENGINES: dict[str, Callable[[], Engine]] = {
    cls.name: cls
    for cls in (
        NoReorderNoCheck,
        NoReorderDoCheck,
        ReorderFull,
        ReorderPartial,
        ReorderAccumulative,
        ReorderReverseAccumulative,
        Exhaustive,
        Random,
    )
}


def engine_from_name(spec: str | Engine) -> Engine:
    """An engine from its name (``"ReorderFull"``) or ``"Random:SEED:N"``; instances pass through.

    Raises ValueError naming the known engines for anything else.
    """
    if isinstance(spec, Engine):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"engine must be an Engine or a name, not {type(spec).__name__}")
    name, _, args = spec.strip().partition(":")
    factory = ENGINES.get(name)
    if factory is None:
        raise ValueError(f"unknown engine {spec!r}; known engines: {', '.join(ENGINES)}")
    if not args:
        return factory()
    if name != "Random":
        raise ValueError(f"engine {name!r} takes no arguments (got {spec!r})")
    parts: Sequence[str] = args.split(":")
    try:
        seed = int(parts[0]) if parts[0] else None
        n = int(parts[1]) if len(parts) > 1 else 100
    except ValueError:
        raise ValueError(f"bad Random engine spec {spec!r}: expected Random:SEED:N") from None
    return Random(seed=seed, n=n)
