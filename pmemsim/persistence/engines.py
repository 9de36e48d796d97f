"""Crash-state engines: which media images to check at each fence epoch.

Six engines carry pmreorder's names and meanings (PMDK ``reorderengines.py``). Like
pmreorder they work on the atoms *flushed* in the epoch, never apply unflushed stores,
skip the stores after the last fence, and judge their states under the markers in force
at the epoch's fence:

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

ReorderFull walks the sequences in pmreorder's order (by length, then
``itertools.permutations`` order), so a capped run covers exactly what pmreorder
covers in the same budget: every short sequence before any long one.

Two engines explore the persistency model itself (:mod:`pmemsim.persistence.model`):
every in-flight atom, flushed or not, may or may not be on media as long as its
predecessors are (lines reach media as program-order prefixes), including after the
last fence, at every crash point where the visible markers change:

* :class:`Exhaustive` -- every distinct media image of every crash point. Lines are
  independent, so the images are the product of each line's distinct reachable
  contents (computed per line, :class:`_Lines`); they are visited in mixed-radix
  Gray-code order (one line changes per state). Over its per-epoch budget it visits the
  images that change the fewest lines first (every single-line change before any
  two-line change), and the report says the run was not exhaustive. With a Python
  checker, crash points with many images are explored lazily
  (:mod:`pmemsim.persistence.lazy`, after Jaaru, ASPLOS 2021): only the lines the
  checker reads branch, each state judged standing for every image that agrees with it
  on those lines; what the checker reads that cannot be followed gets the eager walk.
* :class:`Random` -- ``n`` seeded random images per epoch from the same line contents.

Both skip images already checked (the explorer keys them on the image, and on the
markers when the checker can see markers). Engines are chosen for the whole log or per
marker section by :func:`engine_for`, by instance or by name (:func:`engine_from_name`);
randomness comes from ``random.Random`` seeded by (seed, epoch), so results never
depend on how epochs are split across workers.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar, Protocol

from pmemsim.persistence.checkers import CheckOutcome
from pmemsim.persistence.image import Image
from pmemsim.persistence.model import ORDER_UNIT, Atom, CrashPoint, Epoch, predecessors

if TYPE_CHECKING:
    from pmemsim.persistence.lazy import LazyImage

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
    "Visitor",
    "engine_for",
    "engine_from_name",
    "with_max_states",
]


class Visitor(Protocol):
    """What an engine drives: the image, the crash point, and the judge of each state."""

    image: Image
    #: The number of states after which the current epoch stops (None: no limit).
    limit: int | None
    #: Returns the atoms on media in the current state (when push/pop does not say it).
    describer: Callable[[], tuple[Atom, ...]] | None

    def points(self, epoch: Epoch) -> Sequence[CrashPoint]:
        """The crash points of ``epoch`` whose states the checker must see (the fence last)."""
        ...

    def at(self, point: CrashPoint) -> None:
        """Judge the next states as crashes at ``point``."""
        ...

    def check(self) -> None:
        """Judge the current state."""
        ...

    def limited(self, message: str) -> None:
        """Say that the current epoch was not explored completely, and why."""
        ...

    def lazy_reads(self) -> bool:
        """Whether the checker can be run on lazy images (:mod:`pmemsim.persistence.lazy`) now."""
        ...

    def judge(self, views: Sequence[LazyImage]) -> CheckOutcome | None:
        """Run the checker on ``views`` at the current crash point (a call, not a state)."""
        ...

    def record(self, outcome: CheckOutcome | None) -> None:
        """Count the current state with a verdict already known (a lazy leaf's representative)."""
        ...


def epoch_rng(name: str, seed: int, epoch: int) -> random.Random:
    """The random stream of one engine in one epoch: independent of workers and of other epochs."""
    return random.Random(f"{name}:{seed}:{epoch}")


@dataclass(frozen=True)
class Engine:
    """Base of the engines: ``explore`` calls ``v.check()`` once per crash state of an epoch.

    ``model_based`` engines explore every in-flight atom, every crash point and the final
    (unfenced) epoch; the pmreorder engines explore the flushed atoms of fenced epochs at
    the fence. ``dedup`` engines skip images already checked (the state is then not
    counted). ``samples`` engines pick some states by design, so a run with them is never
    reported as exhaustive.
    """

    name: ClassVar[str] = "Engine"
    model_based: ClassVar[bool] = False
    dedup: ClassVar[bool] = False
    samples: ClassVar[bool] = False

    def universe(self, epoch: Epoch) -> tuple[Atom, ...]:
        """The atoms this engine may apply in ``epoch``."""
        return epoch.inflight if self.model_based else epoch.flushed

    def wants(self, epoch: Epoch) -> bool:
        """Whether ``epoch`` is explored at all."""
        return self.model_based or not epoch.final

    def estimate(self, epoch: Epoch) -> int:
        """About how many states ``explore`` visits (for progress bars)."""
        return 1

    def explore(self, epoch: Epoch, v: Visitor, seed: int) -> None:
        """Visit the crash states of ``epoch``; the image is at the epoch's durable base on entry and exit."""
        raise NotImplementedError

    def reads_lazily(self, epoch: Epoch) -> bool:
        """Whether this engine may explore ``epoch`` by lazy reads (a state then stands for many images)."""
        return False

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

    def explore(self, epoch: Epoch, v: Visitor, seed: int) -> None:
        """Nothing to visit."""


@dataclass(frozen=True)
class NoReorderDoCheck(Engine):
    """One state per epoch: every flushed store applied in program order."""

    name: ClassVar[str] = "NoReorderDoCheck"

    def explore(self, epoch: Epoch, v: Visitor, seed: int) -> None:
        """Apply all flushed atoms, check once."""
        v.at(epoch.fence_point)
        for atom in epoch.flushed:
            v.image.push(atom)
        v.check()


@dataclass(frozen=True)
class ReorderAccumulative(Engine):
    """Every program-order prefix of the flushed stores, the empty one included (k+1 states)."""

    name: ClassVar[str] = "ReorderAccumulative"

    def estimate(self, epoch: Epoch) -> int:
        """k + 1."""
        return len(epoch.flushed) + 1

    def explore(self, epoch: Epoch, v: Visitor, seed: int) -> None:
        """Check the empty prefix, then add one atom at a time."""
        v.at(epoch.fence_point)
        v.check()
        for atom in epoch.flushed:
            v.image.push(atom)
            v.check()


@dataclass(frozen=True)
class ReorderReverseAccumulative(Engine):
    """Every prefix of the reversed list of flushed stores (the last store reaches media first)."""

    name: ClassVar[str] = "ReorderReverseAccumulative"

    def estimate(self, epoch: Epoch) -> int:
        """k + 1."""
        return len(epoch.flushed) + 1

    def explore(self, epoch: Epoch, v: Visitor, seed: int) -> None:
        """Check the empty prefix, then add atoms from the last one backwards."""
        v.at(epoch.fence_point)
        v.check()
        for atom in reversed(epoch.flushed):
            v.image.push(atom)
            v.check()


@dataclass(frozen=True)
class ReorderFull(Engine):
    """Every permutation of every length of the flushed stores: sum over n of k!/(k-n)! states.

    Visited in pmreorder's order: by length, each length in ``itertools.permutations``
    order (consecutive sequences share a prefix, which stays applied). The count
    explodes (12 flushed stores in one epoch are 1.3 billion states), so
    ``max_states_per_epoch`` stops an epoch after that many states -- having covered every
    shorter sequence first -- and the report says the run was not exhaustive; None
    means no limit.
    """

    name: ClassVar[str] = "ReorderFull"
    max_states_per_epoch: int | None = 65536

    def estimate(self, epoch: Epoch) -> int:
        """sum over n of k!/(k-n)!, capped."""
        k = len(epoch.flushed)
        cap = self.max_states_per_epoch
        total = 0
        for n in range(k + 1):
            total += math.perm(k, n)
            if cap is not None and total >= cap:
                return cap
        return total

    def explore(self, epoch: Epoch, v: Visitor, seed: int) -> None:
        """By length, then permutation order; only the suffix that differs is undone and redone."""
        atoms = epoch.flushed
        image = v.image
        v.at(epoch.fence_point)
        v.limit = self.max_states_per_epoch
        previous: tuple[int, ...] = ()
        for length in range(len(atoms) + 1):
            for sequence in itertools.permutations(range(len(atoms)), length):
                common = 0
                while common < len(previous) and common < length and previous[common] == sequence[common]:
                    common += 1
                image.unwind(common)
                for i in sequence[common:]:
                    image.push(atoms[i])
                v.check()
                previous = sequence


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
    samples: ClassVar[bool] = True
    max_seq: int = 3

    def estimate(self, epoch: Epoch) -> int:
        """min(max_seq, population)."""
        return min(self.max_seq, self._population(len(epoch.flushed)))

    @staticmethod
    def _population(k: int) -> int:
        return sum(min(math.comb(k, n), 1000) for n in range(k + 1))

    def explore(self, epoch: Epoch, v: Visitor, seed: int) -> None:
        """Check each sampled combination, applied in program order."""
        atoms = epoch.flushed
        k = len(atoms)
        sizes = [min(math.comb(k, n), 1000) for n in range(k + 1)]
        rng = epoch_rng(self.name, seed, epoch.index)
        v.at(epoch.fence_point)
        for rank in rng.sample(range(sum(sizes)), min(self.max_seq, sum(sizes))):
            n = 0
            while rank >= sizes[n]:
                rank -= sizes[n]
                n += 1
            for i in _comb_unrank(k, n, rank):
                v.image.push(atoms[i])
            v.check()
            v.image.unwind()


#: A budget no run reaches (Exhaustive without a cap).
_UNLIMITED = 1 << 62


class _TooMany(Exception):
    """A line has more reachable contents than the budget allows enumerating."""


def _line_states(group: Sequence[Atom], base: bytes, l0: int, limit: int) -> tuple[list[bytes], list[int]]:
    """The distinct contents one line can hold, and for each a set of its atoms (bit mask) producing it.

    ``group`` are the line's in-flight atoms in program order. The states are the
    down-sets of :func:`~pmemsim.persistence.model.predecessors`; they are built atom by
    atom, merging partial states that agree on the content and on the atoms later atoms
    still depend on (a line written by k cached stores has k+1 states, not 2^k). The
    base content comes first. Raises :class:`_TooMany` past ``limit`` states.
    """
    preds = predecessors(group)
    last_use = [-1] * len(group)  # the last atom that depends on each atom
    for i, ps in enumerate(preds):
        for j in ps:
            last_use[j] = i
    states: dict[tuple[bytes, int], int] = {(base, 0): 0}  # (content, live landed bits) -> landed bits
    for i, atom in enumerate(group):
        live = 0
        for j in range(i + 1):
            if last_use[j] > i:
                live |= 1 << j
        need = 0
        for j in preds[i]:
            need |= 1 << j
        lo, hi = atom.offset - l0, atom.end - l0
        data, bit = atom.data, 1 << i
        nxt: dict[tuple[bytes, int], int] = {}
        for (content, _), landed in states.items():
            nxt.setdefault((content, landed & live), landed)
            if landed & need == need:
                landed |= bit
                nxt.setdefault((content[:lo] + data + content[hi:], landed & live), landed)
        if len(nxt) > limit:
            raise _TooMany
        states = nxt
    values: dict[bytes, int] = {}
    for (content, _), landed in states.items():
        values.setdefault(content, landed)
    return list(values), list(values.values())


class _Lines:
    """The in-flight atoms of one crash point grouped by line, with each line's distinct contents.

    ``values[j]`` are the contents line j can have (index 0 = the durable base),
    ``masks[j][v]`` which of ``atoms[j]`` produce value v. Lines whose atoms never change
    them are dropped: they cannot make images differ.
    """

    def __init__(self, atoms: Sequence[Atom], image: Image, limit: int) -> None:
        grouped: dict[int, list[Atom]] = {}
        for atom in atoms:
            grouped.setdefault(atom.line, []).append(atom)
        self.fidx: list[int] = []
        self.start: list[int] = []
        self.atoms: list[list[Atom]] = []
        self.values: list[list[bytes]] = []
        self.hashes: list[list[int]] = []
        self.masks: list[list[int]] = []
        for group in grouped.values():
            first = group[0]
            l0 = first.offset - first.offset % ORDER_UNIT
            base = image.read(first.fidx, l0, min(l0 + ORDER_UNIT, image.sizes[first.fidx]))
            values, masks = _line_states(group, base, l0, limit)
            if len(values) > 1:
                self.fidx.append(first.fidx)
                self.start.append(l0)
                self.atoms.append(group)
                self.values.append(values)
                self.hashes.append([image.line_hash(first.fidx, l0, v) for v in values])
                self.masks.append(masks)
        self.radix = [len(v) for v in self.values]
        self.digits = [0] * len(self.radix)
        self.total = math.prod(self.radix)

    def set(self, image: Image, j: int, v: int) -> None:
        """Put value ``v`` into line ``j`` of the image."""
        image.set_line(
            self.fidx[j], self.start[j], self.values[j][v], self.hashes[j][v] - self.hashes[j][self.digits[j]]
        )
        self.digits[j] = v

    def reset(self, image: Image) -> None:
        """Back to the durable base."""
        for j, v in enumerate(self.digits):
            if v:
                self.set(image, j, 0)

    def applied(self) -> tuple[Atom, ...]:
        """The atoms on media in the current image, in program order."""
        out = [
            a
            for j, v in enumerate(self.digits)
            for i, a in enumerate(self.atoms[j])
            if self.masks[j][v] >> i & 1
        ]
        out.sort(key=lambda a: a.id)
        return tuple(out)


def _gray(lines: _Lines, image: Image, v: Visitor) -> None:
    """Every image of ``lines``: mixed-radix reflected Gray code (Knuth 7.2.1.1, Algorithm H)."""
    radix = lines.radix
    m = len(radix)
    a = lines.digits
    focus = list(range(m + 1))
    direction = [1] * m
    v.check()
    while True:
        j = focus[0]
        focus[0] = 0
        if j == m:
            return
        lines.set(image, j, a[j] + direction[j])
        v.check()
        if a[j] == 0 or a[j] == radix[j] - 1:
            direction[j] = -direction[j]
            focus[j] = focus[j + 1]
            focus[j + 1] = j + 1


def _fewest_lines_first(lines: _Lines, image: Image, v: Visitor, budget: int) -> int:
    """Images changing 0, 1, 2, ... lines from the base, until ``budget`` states; returns how many."""
    done = 0
    m = len(lines.radix)
    for weight in range(m + 1):
        for chosen in itertools.combinations(range(m), weight):
            for values in itertools.product(*(range(1, lines.radix[j]) for j in chosen)):
                if done >= budget:
                    return done
                for j, value in zip(chosen, values, strict=True):
                    lines.set(image, j, value)
                v.check()
                done += 1
                for j in chosen:
                    lines.set(image, j, 0)
    return done


def _random_images(lines: _Lines, image: Image, v: Visitor, rng: random.Random, count: int) -> None:
    for _ in range(count):
        for j, r in enumerate(lines.radix):
            value = rng.randrange(r)
            if value != lines.digits[j]:
                lines.set(image, j, value)
        v.check()


def _estimate_lines(atoms: Sequence[Atom]) -> int:
    # An upper bound without touching the image: a line of c cached and n NT atoms has at
    # most (c + 1) * 2^n contents.
    cached: dict[int, int] = {}
    nt: dict[int, int] = {}
    for atom in atoms:
        counts = nt if atom.nontemporal else cached
        counts[atom.line] = counts.get(atom.line, 0) + 1
    total = 1
    for line in cached.keys() | nt.keys():
        total *= (cached.get(line, 0) + 1) << min(nt.get(line, 0), 64)
    return total


@dataclass(frozen=True)
class Exhaustive(Engine):
    """Every distinct media image the model allows at every crash point, each checked once.

    An epoch whose images exceed ``max_states_per_epoch`` (None: no limit) is explored
    fewest-changed-lines first up to that many states, and the report says the run was
    not exhaustive.

    With a Python checker, a crash point with more than ``lazy_above`` images (None:
    never) is explored lazily (:mod:`pmemsim.persistence.lazy`): only the lines the
    checker reads branch, and each state judged stands for every image that agrees with
    it on those lines. A checker that cannot be followed that way (it reads the whole
    image, or takes ``image.obj``), or whose reads admit more images than the budget,
    gets the eager exploration at that crash point.
    """

    name: ClassVar[str] = "Exhaustive"
    model_based: ClassVar[bool] = True
    dedup: ClassVar[bool] = True
    max_states_per_epoch: int | None = 1 << 16
    lazy_above: int | None = 64

    def reads_lazily(self, epoch: Epoch) -> bool:
        """Whether some crash point of ``epoch`` may have more than ``lazy_above`` images."""
        return self.lazy_above is not None and _estimate_lines(epoch.inflight) > self.lazy_above

    def estimate(self, epoch: Epoch) -> int:
        """An upper bound of the images at the fence, capped."""
        total = _estimate_lines(epoch.inflight)
        cap = self.max_states_per_epoch
        return total if cap is None else min(total, cap)

    def explore(self, epoch: Epoch, v: Visitor, seed: int) -> None:
        """Per crash point: the Gray code when the images fit the budget, fewest lines first when not."""
        image = v.image
        points = v.points(epoch)
        cap = self.max_states_per_epoch
        budget = _UNLIMITED if cap is None else cap
        for n, point in enumerate(points):
            v.at(point)
            share = budget if cap is None else max(1, budget // (len(points) - n))
            try:
                lines = _Lines(epoch.inflight[: point.atoms], image, share)
            except _TooMany:
                lines = None
            judged = None if lines is None else self._lazily(lines, image, v, share)
            if judged is not None:
                budget -= judged
                continue
            if lines is not None and lines.total <= share:
                v.describer = lines.applied
                try:
                    _gray(lines, image, v)
                finally:
                    lines.reset(image)
                budget -= lines.total
                continue
            assert cap is not None
            if lines is None:  # one line alone has more contents than the budget: sample them
                v.limited(
                    f"epoch {epoch.index}: a cache line has more than {share} reachable contents; "
                    f"checked {share} random images"
                )
                self._sample(epoch, point, v, seed, share)
                budget -= share
                continue
            v.describer = lines.applied
            try:
                done = _fewest_lines_first(lines, image, v, share)
            finally:
                lines.reset(image)
            v.limited(
                f"epoch {epoch.index}: {lines.total} distinct images exceed max_states_per_epoch={cap}; "
                f"checked {done}, changing the fewest cache lines first"
            )
            budget -= done

    def _lazily(self, lines: _Lines, image: Image, v: Visitor, share: int) -> int | None:
        """Explore one crash point lazily when that applies: the states judged, or None to go eager."""
        if self.lazy_above is None or lines.total <= self.lazy_above or not v.lazy_reads():
            return None
        from pmemsim.persistence import lazy  # here: it builds a C type at import, for this case only

        leaves = lazy.walk(lines, image, v.judge, share)
        if isinstance(leaves, str):  # the walk gave up (its calls are counted): eager is always right
            return None
        v.describer = lines.applied
        previous: tuple[tuple[int, int], ...] = ()
        judged = len(leaves)
        try:
            for leaf in leaves:  # each leaf's representative: its lines as read, every other line at base
                digits = lines.digits
                for j, _ in previous:
                    if digits[j]:
                        lines.set(image, j, 0)
                for j, value in leaf.path:
                    if digits[j] != value:
                        lines.set(image, j, value)
                v.record(leaf.outcome)
                previous = leaf.path
                if leaf.outcome is not None and not any(value for _, value in leaf.path):
                    # The base image is judged on its own (a rejected initial image is the checker's
                    # error): the rest of its leaf, if any, is a second state with the same verdict.
                    read = {j for j, _ in leaf.path}
                    other = next((j for j in range(len(lines.radix)) if j not in read), None)
                    if other is not None:
                        lines.set(image, other, 1)
                        v.record(leaf.outcome)
                        lines.set(image, other, 0)
                        judged += 1
        finally:
            lines.reset(image)
        return judged

    @staticmethod
    def _sample(epoch: Epoch, point: CrashPoint, v: Visitor, seed: int, count: int) -> None:
        # Each image: walk the atoms in program order, putting each on media with
        # probability 1/2 when its predecessors are there.
        atoms = epoch.inflight[: point.atoms]
        preds = predecessors(atoms)
        rng = epoch_rng("Exhaustive-sample", seed, epoch.index)
        image = v.image
        landed: list[bool] = []
        v.describer = lambda: tuple(a for a, on in zip(atoms, landed, strict=True) if on)
        for _ in range(count):
            landed = []
            for i, atom in enumerate(atoms):
                on = all(landed[j] for j in preds[i]) and rng.random() < 0.5
                landed.append(on)
                if on:
                    image.push(atom)
            v.check()
            image.unwind()


@dataclass(frozen=True)
class Random(Engine):
    """``n`` seeded random images per epoch from the model (each line at a random reachable content).

    With a checker that sees markers, each image is drawn at a random crash point of the
    epoch. ``seed`` None takes the seed given to ``replay``. Images already checked are skipped.
    """

    name: ClassVar[str] = "Random"
    model_based: ClassVar[bool] = True
    dedup: ClassVar[bool] = True
    samples: ClassVar[bool] = True
    seed: int | None = None
    n: int = 100

    def estimate(self, epoch: Epoch) -> int:
        """n."""
        return self.n

    def explore(self, epoch: Epoch, v: Visitor, seed: int) -> None:
        """Draw ``n`` images."""
        image = v.image
        rng = epoch_rng(self.name, seed if self.seed is None else self.seed, epoch.index)
        points = v.points(epoch)
        draws = [0] * len(points)
        for _ in range(self.n):
            draws[rng.randrange(len(points))] += 1
        for point, count in zip(points, draws, strict=True):
            if not count:
                continue
            v.at(point)
            try:
                lines = _Lines(epoch.inflight[: point.atoms], image, 1 << 16)
            except _TooMany:
                Exhaustive._sample(epoch, point, v, rng.randrange(1 << 30), count)
                continue
            v.describer = lines.applied
            try:
                _random_images(lines, image, v, rng, count)
            finally:
                lines.reset(image)


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
    if not 0 < n <= 1 << 40:
        raise ValueError(f"bad Random engine spec {spec!r}: N must be from 1 to 2^40, got {n}")
    return Random(seed=seed, n=n)


def with_max_states(engine: Engine, max_states: int | None) -> Engine:
    """``engine`` with its per-epoch state budget set to ``max_states`` (engines without one unchanged)."""
    if hasattr(engine, "max_states_per_epoch"):
        return replace(engine, max_states_per_epoch=max_states)  # type: ignore[call-arg]
    return engine


def engine_for(sections: Sequence[str], default: Engine, section_engines: Mapping[str, Engine]) -> Engine:
    """The engine for an epoch whose open sections are ``sections`` (outermost first).

    The innermost open section with an engine of its own decides (pmreorder's engine
    stack, ``-x NAME=ENGINE``); outside every such section, ``default``.
    """
    for name in reversed(sections):
        engine = section_engines.get(name)
        if engine is not None:
            return engine
    return default
