"""The Lua scripts of shared polling, and how a status travels through Redis.

Each script is one atomic step over one account's keys (all on one Cluster
slot, see ``_keys.py``), so no read-modify-write race exists between the
processes of a fleet:

- ``take``: read the shared statuses and leases of one or more jobs (a
  process's first reads of many jobs go in one call); take each lease (a new
  fence number from the fence counter) nobody holds. A status stored terminal
  is returned without taking anything: nothing will change it.
- ``store``: the fenced write. Only the process holding the lease with this
  value stores, never over a status written under a newer fence nor over a
  terminal one; a terminal status releases the lease and takes the job out of
  the registry's open set (the fleet's one registry write for a job's end).
  It counts the status's version (its writes) and publishes the job id on the
  hints channel, with the version and the status itself when it is at most
  :data:`HINT_DATA_MAX` long, so followers need not read it.
- ``store_final``: a terminal status read by a process that holds no lease
  (``refresh()``, ``stop()``): stored unless a terminal one is there already,
  and out of the open set the same way.
- ``beat``: one heartbeat for all of a process's leases: renew those it still
  holds and the process's own heartbeat key, store (fenced, and hinted) the
  running statuses its polls read since the last beat, and report the
  remaining time of the leases of the jobs it follows and their statuses'
  versions (a hint lost shows there).
- ``release``: give leases back (each only if still held with our value) and
  hint the followers, so one of them takes over at once.

A lease's value is ``<process id>|<fence>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from gameball_async._decode import decode_status as read_status
from gameball_async._errors import ProtocolError
from gameball_async._json import make_dumps, make_loads
from gameball_async._models import BatchStatus, Operation

from ._keys import Keys
from ._limiter_scripts import release_lua
from ._registry import settled_lua

__all__ = [
    "HINT_DATA_MAX",
    "Hint",
    "Scripts",
    "Taken",
    "decode_status",
    "encode_status",
    "fence_of",
    "holder_of",
    "parse_hint",
    "text",
]


def _hint_lua(channel: str, job_id: str, data: str, carries: str, indent: str = "") -> str:
    """Lua that publishes a write's hint (as :func:`parse_hint` reads it): the
    job id, the local ``version`` and the status ``data`` when ``carries`` is
    '1', else the job id alone (Lua expressions)."""
    lines = [
        f"if {carries} == '1' then",
        f"  redis.call('PUBLISH', {channel}, {job_id} .. '\\n' .. version .. '\\n' .. {data})",
        "else",
        f"  redis.call('PUBLISH', {channel}, {job_id})",
        "end",
    ]
    return "".join(f"{indent}{line}\n" for line in lines)


# KEYS: the fence counter, then per job its lease and status hash. ARGV:
# process id, lease ttl ms, fence ttl ms. Per job: taken, holder, data, and
# the version of the stored status (its writes' count, -1: none).
_TAKE: Final = """
local out = {}
for i = 2, #KEYS, 2 do
  local stored = redis.call('HMGET', KEYS[i + 1], 'data', 'terminal', 'version')
  local version = tonumber(stored[3]) or -1
  if stored[2] == '1' then
    table.insert(out, 0); table.insert(out, false)
  else
    local holder = redis.call('GET', KEYS[i])
    if holder then
      if string.match(holder, '^(.*)|%d+$') == ARGV[1] then
        redis.call('PEXPIRE', KEYS[i], ARGV[2])
        table.insert(out, 1)
      else
        table.insert(out, 0)
      end
      table.insert(out, holder)
    else
      local next_fence = redis.call('INCR', KEYS[1])
      redis.call('PEXPIRE', KEYS[1], ARGV[3])
      holder = ARGV[1] .. '|' .. next_fence
      redis.call('SET', KEYS[i], holder, 'PX', ARGV[2])
      table.insert(out, 1); table.insert(out, holder)
    end
  end
  table.insert(out, stored[1] or false); table.insert(out, version)
end
return out
"""

# KEYS: lease, status hash, fence, job record, open set, and the limiter's log
# when releases ride along. ARGV: lease value, fence, data, terminal flag,
# status ttl ms, fence ttl ms, channel, job id, '1' when the hint carries the
# status, the log's ttl ms, then (age ms, member) pairs: the limiter's slot
# releases (as its RELEASE script), made whether or not the write is.
_STORE: Final = (
    "\nif KEYS[6] then"
    + release_lua("KEYS[6]", "ARGV[10]", 11)
    + """end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local stored = redis.call('HMGET', KEYS[2], 'fence', 'terminal')
if stored[2] == '1' then return 2 end
if stored[1] and tonumber(stored[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'data', ARGV[3], 'fence', ARGV[2], 'terminal', ARGV[4])
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[1])"""
    + settled_lua("KEYS[4]", "KEYS[5]", "ARGV[8]")
    + "end\n"
    + _hint_lua("ARGV[7]", "ARGV[8]", "ARGV[3]", "ARGV[9]")
    + "return 1\n"
)

# KEYS: status hash, job record, open set. ARGV: data, status ttl ms, channel,
# job id, '1' when the hint carries the status.
_STORE_FINAL: Final = (
    """
if redis.call('HGET', KEYS[1], 'terminal') == '1' then return 2 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'terminal', '1')
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])"""
    + settled_lua("KEYS[2]", "KEYS[3]", "ARGV[4]")
    + _hint_lua("ARGV[3]", "ARGV[4]", "ARGV[1]", "ARGV[5]")
    + "return 1\n"
)

# KEYS: the process's heartbeat key (or the fence counter), the fence counter,
# per owned job its lease and status hash, then per followed job its lease and
# status hash. ARGV: lease ttl ms, owned count, heartbeat ttl ms ('0': not
# renewed here), status ttl ms, fence ttl ms, channel, then per owned job its
# lease's value, fence, job id, a running status to store ('' for none) and '1'
# when the hint carries it. Per owned lease: 1 renewed (and its status stored
# as ``store`` would, unless a terminal one is there), 2 renewed but its write
# refused (a newer fence wrote: the lease is a stale one), 0 lost;
# per followed job: its lease's ms left and the version of its stored status
# (-1: none).
_BEAT: Final = (
    """
if ARGV[3] ~= '0' then redis.call('SET', KEYS[1], '1', 'PX', ARGV[3]) end
local n = tonumber(ARGV[2])
local out = {}
for i = 1, n do
  local a = 6 + (i - 1) * 5
  local lease, status = KEYS[2 * i + 1], KEYS[2 * i + 2]
  if redis.call('GET', lease) == ARGV[a + 1] then
    redis.call('PEXPIRE', lease, ARGV[1])
    out[i] = 1
    local data = ARGV[a + 4]
    if data ~= '' then
      local stored = redis.call('HMGET', status, 'fence', 'terminal')
      if stored[1] and tonumber(stored[1]) > tonumber(ARGV[a + 2]) then
        out[i] = 2
      elseif stored[2] ~= '1' then
        redis.call('HSET', status, 'data', data, 'fence', ARGV[a + 2], 'terminal', '0')
        local version = redis.call('HINCRBY', status, 'version', 1)
        redis.call('PEXPIRE', status, ARGV[4])
        redis.call('PEXPIRE', KEYS[2], ARGV[5])
"""
    + _hint_lua("ARGV[6]", "ARGV[a + 3]", "data", "ARGV[a + 5]", indent="        ")
    + """      end
    end
  else
    out[i] = 0
  end
end
for i = 2 * n + 3, #KEYS, 2 do
  table.insert(out, redis.call('PTTL', KEYS[i]))
  table.insert(out, tonumber(redis.call('HGET', KEYS[i + 1], 'version')) or -1)
end
return out
"""
)

_RELEASE: Final = """
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[2 * i] then
    redis.call('DEL', KEYS[i])
    redis.call('PUBLISH', ARGV[1], ARGV[2 * i + 1])
    released = released + 1
  end
end
return released
"""

#: The longest status JSON a hint carries: a terminal status of 1,000 items
#: (about 450 KB with its per-item results) fits; a longer one goes by its key
#: alone, read by each follower. Redis drops a subscriber that falls far behind
#: (``client-output-buffer-limit pubsub``): it reconnects and reads again.
HINT_DATA_MAX: Final = 512 * 1024

#: Seconds a shared status is kept after its last write.
STATUS_TTL: Final = 86_400.0
#: Seconds the fence counter is kept after its last use: longer than any
#: status, so a fence never restarts under a status written with a higher one.
FENCE_TTL: Final = 7 * 86_400.0


def text(value: Any) -> str | None:
    """A Redis reply value as text (clients may or may not decode replies)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


@attrs.frozen
class Taken:
    """What ``take`` found for one job."""

    #: Whether this process holds the job's lease now.
    ours: bool
    #: The lease's value, ``None`` when a terminal status is stored.
    holder: str | None
    #: The stored status JSON, if any.
    data: str | None
    #: The stored status's version: how many writes it has had (-1: none).
    version: int


@attrs.frozen
class Hint:
    """A message of the hints channel: a job's id, and the status stored with
    its version when the message carries it."""

    job_id: str
    version: int | None = None
    data: str | None = None


def parse_hint(message: str) -> Hint:
    """A hints channel message: ``<job id>`` or ``<job id>\\n<version>\\n<status JSON>``.

    :raises ValueError: when the version is not a number.
    """
    job_id, sep, rest = message.partition("\n")
    if not sep:
        return Hint(job_id)
    version, sep, data = rest.partition("\n")
    if not sep:
        raise ValueError("a hint with a version and no status")
    return Hint(job_id, int(version), data)


def fence_of(lease: str) -> int:
    """The fence number of a lease value (``<process id>|<fence>``)."""
    return int(lease.rsplit("|", 1)[1])


def holder_of(lease: str) -> str:
    """The owner named in a lease value (``<process id>|<fence>``)."""
    return lease.rsplit("|", 1)[0]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, list)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON data")


_dumps: Final = make_dumps(_plain)
_loads: Final = make_loads()


def encode_status(status: BatchStatus) -> bytes:
    """A status as the JSON stored in Redis: the reply it was read from.

    ``{"job_id", "operation", "state_word", "reply"}``: the reply as the owner's read kept it
    (a running job's top-level fields, a terminal one's whole reply), which a
    follower decodes as the owner did, its per-item results lazily. Encoding
    the reply alone costs one ``dumps`` of data that is JSON already, where the
    decoded form (:meth:`BatchStatus.to_dict`) would build and write every
    per-item result twice. A status read from no reply (``raw`` empty) goes as
    ``to_dict(raw=True)``.
    """
    if not status.raw:
        return _dumps(status.to_dict(raw=True))
    operation = status.operation
    return _dumps(
        {
            "job_id": status.job_id,
            "operation": None if operation is None else operation.value,
            # as the owner showed it (a word quoting the key is redacted)
            "state_word": status.state_word,
            "reply": status.raw,
        }
    )


def decode_status(data: str | bytes) -> BatchStatus:
    """A status stored by :func:`encode_status` (or as ``to_dict(raw=True)``,
    the form of releases before 0.3).

    :raises ValueError: when ``data`` is not such a status.
    """
    stored = _loads(data)
    if not isinstance(stored, Mapping) or "reply" not in stored:
        return BatchStatus.from_dict(stored)
    job_id, operation = stored.get("job_id"), stored.get("operation")
    word = stored.get("state_word")
    if not isinstance(job_id, str) or not (operation is None or isinstance(operation, str)):
        raise ValueError("a stored status without its job id or with an unreadable operation")
    try:
        status = read_status(
            stored["reply"],
            job_id=job_id,
            # a running status's reply holds no results unless its read kept them
            operation=None if operation is None else Operation(operation),
        )
    except (ProtocolError, ValueError) as exc:  # ValueError: an unknown operation
        raise ValueError(f"a stored status that is not a status reply: {exc}") from None
    if isinstance(word, str) and word != status.state_word:
        status = attrs.evolve(status, state_word=word)
    return status


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class Scripts:
    """The scripts of shared polling, registered on one client.

    Each call is one ``EVALSHA`` (the client loads the script again when a
    restarted Redis has forgotten it).
    """

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._keys = keys
        self._take: AsyncScript = client.register_script(_TAKE)
        self._store: AsyncScript = client.register_script(_STORE)
        self._store_final: AsyncScript = client.register_script(_STORE_FINAL)
        self._beat: AsyncScript = client.register_script(_BEAT)
        self._release: AsyncScript = client.register_script(_RELEASE)

    async def take(self, job_ids: Sequence[str], process_id: str, lease_ttl: float) -> list[Taken]:
        """Read jobs' shared statuses, taking the lease of each that nobody holds.

        :return: per job (in order) whether this process holds its lease now,
            the lease's value (``None`` when a terminal status is stored), the
            stored status JSON and its version (-1: none).
        """
        keys = self._keys
        names = [keys.fence]
        for job_id in job_ids:
            names += [keys.lease(job_id), keys.status(job_id)]
        reply = await self._take(keys=names, args=[process_id, _ms(lease_ttl), _ms(FENCE_TTL)])
        return [
            Taken(int(reply[i]) == 1, text(reply[i + 1]), text(reply[i + 2]), int(reply[i + 3]))
            for i in range(0, len(reply), 4)
        ]

    async def store(
        self,
        job_id: str,
        lease: str,
        data: bytes,
        *,
        terminal: bool,
        releases: tuple[str, int, list[str | int]] | None = None,
    ) -> int:
        """The fenced write: 1 stored, 0 refused (lease lost or a newer fence
        wrote), 2 a terminal status is stored already. A terminal status
        stored (1, or 2: stored by another) has left the registry's open set.
        The hint carries the status when it is at most :data:`HINT_DATA_MAX`
        long, so followers need not read it. ``releases`` (the limiter's log,
        its ttl ms, (age ms, member) pairs, from ``take_releases``) are made
        in the same call."""
        keys = self._keys
        reply = await self._store(
            keys=[
                keys.lease(job_id),
                keys.status(job_id),
                keys.fence,
                keys.job(job_id),
                keys.open_jobs,
                *([releases[0]] if releases is not None else []),
            ],
            args=[
                lease,
                fence_of(lease),
                data,
                "1" if terminal else "0",
                _ms(STATUS_TTL),
                _ms(FENCE_TTL),
                keys.hints,
                job_id,
                "1" if len(data) <= HINT_DATA_MAX else "0",
                *([releases[1], *releases[2]] if releases is not None else []),
            ],
        )
        return int(reply)

    async def store_final(self, job_id: str, data: bytes) -> int:
        """Store a terminal status read without a lease: 1 stored, 2 one was there.

        Either way the job has left the registry's open set.
        """
        keys = self._keys
        reply = await self._store_final(
            keys=[keys.status(job_id), keys.job(job_id), keys.open_jobs],
            args=[
                data,
                _ms(STATUS_TTL),
                keys.hints,
                job_id,
                "1" if len(data) <= HINT_DATA_MAX else "0",
            ],
        )
        return int(reply)

    async def beat(
        self,
        owned: Sequence[tuple[str, str]],
        followed: Sequence[str],
        lease_ttl: float,
        *,
        process: tuple[str, float] | None = None,
        statuses: Mapping[str, bytes] | None = None,
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Renew ``owned`` leases (job id, value); read the followed jobs' state.

        :param process: the process's heartbeat key and its TTL in seconds, to
            renew in the same call (the fleet's own heartbeat then need not).
        :param statuses: running statuses (JSON, by job id) of owned jobs to
            store and hint in the same call, each a fenced write as
            :meth:`store`'s under the lease renewed.
        :return: per owned lease 1 when it is still ours (and renewed, its
            status stored), 2 when its status was refused (a newer fence
            wrote), 0 when it is lost; per followed job its lease's remaining
            milliseconds (-2: none, -1: no expiry) and its stored status's
            version (-1: none).
        """
        keys = self._keys
        statuses = statuses or {}
        names = [process[0] if process is not None else keys.fence, keys.fence]
        args: list[str | int | bytes] = [
            _ms(lease_ttl),
            len(owned),
            _ms(process[1]) if process is not None else 0,
            _ms(STATUS_TTL),
            _ms(FENCE_TTL),
            keys.hints,
        ]
        for job_id, value in owned:
            names += [keys.lease(job_id), keys.status(job_id)]
            data = statuses.get(job_id, b"")
            args += [
                value,
                fence_of(value),
                job_id,
                data,
                "1" if len(data) <= HINT_DATA_MAX else "0",
            ]
        for job_id in followed:
            names += [keys.lease(job_id), keys.status(job_id)]
        reply = await self._beat(keys=names, args=args)
        kept = [int(flag) for flag in reply[: len(owned)]]
        rest = reply[len(owned) :]
        return kept, [(int(rest[i]), int(rest[i + 1])) for i in range(0, len(rest), 2)]

    async def release(self, leases: Sequence[tuple[str, str]]) -> int:
        """Give back leases (job id, value) still held with these values."""
        keys = self._keys
        args: list[str] = [keys.hints]
        for job_id, value in leases:
            args += [value, job_id]
        reply = await self._release(keys=[keys.lease(job_id) for job_id, _ in leases], args=args)
        return int(reply)
