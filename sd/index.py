"""Records by key plus IP → candidates, each IP resolved to one winner.

One ``Index`` serves one target set. The set decides, per record, whether it is
a candidate (``Policy.exclude``) and which IPs it claims (``Policy.claims``); the
index keeps the reverse map and re-resolves only the IPs an event touches.

IP-reuse rule (DESIGN.md): among a set's candidates for one IP, ``Ready=True``
beats anything else; among equals the newest creationTimestamp wins; then the
greater key. ``RULES`` is that rule as one ordered table: ``rank`` sorts by it and
``why_lost`` explains by it, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Generic, Iterable, TypeVar

from sd.kinds.kind import Record


R = TypeVar("R", bound=Record)  # what the rule reads of it: key, ready, created


@dataclass(frozen=True, slots=True)
class Rule:
    """One step of the conflict rule: the greater ``key`` wins; ``why`` says why the loser lost."""

    key: Callable[[Any], Any]
    why: Callable[[Any, Any], str]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch else "unknown"


RULES: tuple[Rule, ...] = (
    Rule(  # Ready=True beats anything else
        lambda r: r.ready == "True",
        lambda lo, w: f"not ready (Ready={lo.ready or 'missing'}) while {w.key} is Ready",
    ),
    Rule(  # then the newest creationTimestamp
        lambda r: r.created,
        lambda lo, w: f"older: created {_iso(lo.created)}, {w.key} created {_iso(w.created)}",
    ),
    Rule(  # then the greater key: deterministic
        lambda r: r.key,
        lambda lo, w: f"same readiness and creation time; {w.key} wins by greater name",
    ),
)
_RULE_KEYS = tuple(rule.key for rule in RULES)


def rank(record: Record) -> tuple[Any, ...]:
    """The sort key of the conflict rule: greater wins."""
    return tuple([key(record) for key in _RULE_KEYS])


def why_lost(loser: Record, winner: Record) -> str:
    """The first rule that decided between the two, in words."""
    for rule in RULES:
        if rule.key(loser) != rule.key(winner):
            return rule.why(loser, winner)
    return RULES[-1].why(loser, winner)


@dataclass(frozen=True, slots=True)
class Policy(Generic[R]):
    # Why the record is not a candidate ("not_ready", "terminating", ...), or None.
    exclude: Callable[[R], str | None]
    # The IPs the record claims in this set, primary first.
    claims: Callable[[R], tuple[str, ...]]


class Index(Generic[R]):
    """Incremental IP → winner resolution for one target set.

    Mutators return the IPs whose published output changed: the winner is a
    different record, or the same key with a different record value. An event
    whose record equals the stored one returns an empty set.
    """

    def __init__(self, policy: Policy[R]) -> None:
        self._policy = policy
        self.records: dict[str, R] = {}
        self._claims: dict[str, tuple[str, ...]] = {}  # candidates only
        # IP → keys of the candidates claiming it. Tuples, not sets: almost every IP has
        # one claimer, and a 1-tuple is a fifth of an empty set's size.
        self._by_ip: dict[str, tuple[str, ...]] = {}
        self.winners: dict[str, R] = {}
        self.conflicts_resolved = 0  # times a contested IP got a (new) winner

    def __len__(self) -> int:
        return len(self.records)

    def upsert(self, record: R) -> set[str]:
        key = record.key
        old = self.records.get(key)
        if old == record:
            return set()
        self.records[key] = record
        return self.refresh(key)

    def refresh(self, key: str) -> set[str]:
        """(Re)claim the stored record's IPs: after an upsert, or when something the
        policy reads besides the record changed (reachability probe results)."""
        record = self.records.get(key)
        if record is None:
            return set()
        touched = self._unclaim(key)
        if self._policy.exclude(record) is None:
            claims = self._policy.claims(record)
            if claims:
                self._claims[key] = claims
                for ip in claims:
                    self._by_ip[ip] = self._by_ip.get(ip, ()) + (key,)
                touched.update(claims)
        return self._resolve(touched)

    def delete(self, key: str) -> set[str]:
        if self.records.pop(key, None) is None:
            return set()
        return self._resolve(self._unclaim(key))

    def replace(self, records: Iterable[R], keys: Iterable[str] | None = None) -> set[str]:
        """Make the index hold exactly ``records`` (among ``keys``, default: all keys).

        The result equals a fresh build from ``records``; only IPs whose output
        changed are returned, so a relist that changed nothing publishes nothing.
        """
        scope = set(self.records if keys is None else keys)
        changed: set[str] = set()
        seen: set[str] = set()
        for record in records:
            seen.add(record.key)
            changed |= self.upsert(record)
        for key in scope - seen:
            changed |= self.delete(key)
        return changed

    def excluded(self, key: str) -> str | None:
        return self._policy.exclude(self.records[key])

    def claims(self, key: str) -> tuple[str, ...]:
        return self._claims.get(key, ())

    def candidates(self, ip: str) -> list[R]:
        """The IP's candidates, winner first."""
        return sorted((self.records[k] for k in self._by_ip.get(ip, ())), key=rank, reverse=True)

    def conflicts(self) -> int:
        """IPs currently claimed by more than one candidate."""
        return sum(1 for keys in self._by_ip.values() if len(keys) > 1)

    def _unclaim(self, key: str) -> set[str]:
        claims = self._claims.pop(key, ())
        for ip in claims:
            keys = tuple(k for k in self._by_ip[ip] if k != key)
            if keys:
                self._by_ip[ip] = keys
            else:
                del self._by_ip[ip]
        return set(claims)

    def _resolve(self, ips: set[str]) -> set[str]:
        changed = set()
        for ip in ips:
            keys = self._by_ip.get(ip)
            if not keys:
                best = None
            elif len(keys) == 1:  # almost every IP: no ranking needed
                best = self.records[keys[0]]
            else:
                best = max((self.records[k] for k in keys), key=rank)
            if best is None:
                if self.winners.pop(ip, None) is not None:
                    changed.add(ip)
                continue
            previous = self.winners.get(ip)
            if previous is not best:
                if len(keys) > 1 and (previous is None or previous.key != best.key):  # type: ignore[arg-type]
                    self.conflicts_resolved += 1
                self.winners[ip] = best
                changed.add(ip)
        return changed
