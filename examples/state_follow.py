"""Follow mod_cc_events' live state mirror from Python (redis-py).

Read the snapshot at one consistent point, then apply the stream from the
entry the snapshot names: no event is missed and none is applied twice.

    python3 examples/state_follow.py --port 6379 --prefix cc_state --stream callcenter_stream
"""
import argparse
import json

import redis


def read_snapshot(r, prefix):
    """The mirror at one point: (meta, {key: {field: value}}), values parsed."""
    while True:
        meta = r.hgetall(f"{prefix}:meta")
        if "seeded_at" not in meta:
            raise RuntimeError(f"{prefix}:meta has no seeded_at: is state=true, and mod_callcenter loaded?")
        queues = r.hkeys(f"{prefix}:queues")
        with r.pipeline(transaction=True) as p:  # MULTI ... EXEC: one consistent point
            p.hgetall(f"{prefix}:meta")
            p.hgetall(f"{prefix}:agents")
            p.hgetall(f"{prefix}:queues")
            for q in queues:
                p.hgetall(f"{prefix}:members:{q}")
            meta, agents, qs, *members = p.execute()
        if sorted(qs) == sorted(queues):  # no reseed changed the queue list in between
            break
    state = {f"{prefix}:agents": agents, f"{prefix}:queues": qs}
    for q, m in zip(queues, members):
        state[f"{prefix}:members:{q}"] = m
    parsed = {key: {f: json.loads(v) for f, v in h.items()} for key, h in state.items()}
    return meta, parsed


def apply(state, fields):
    """Applies one stream entry to the state. False: the module rebuilt the
    snapshot (a `state-seed` entry), so read it again."""
    if fields.get("action") == "state-seed":
        return False
    for key, changes in json.loads(fields.get("state", "{}")).items():
        h = state.setdefault(key, {})
        for field, value in changes.items():
            if value is None:
                h.pop(field, None)
            else:
                h[field] = value
    return True


def follow(r, prefix, stream, block_ms=5000):
    """Yields (state, last entry id) after every batch of stream entries."""
    meta, state = read_snapshot(r, prefix)
    last = meta["stream_id"]
    while True:
        reply = r.xread({stream: last}, count=1000, block=block_ms) or []
        for _stream, entries in reply:
            for entry_id, fields in entries:
                if not apply(state, fields):
                    meta, state = read_snapshot(r, prefix)
                    last = meta["stream_id"]
                    break
                last = entry_id
        yield state, last


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--prefix", default="cc_state")
    ap.add_argument("--stream", default="callcenter_stream")
    a = ap.parse_args()
    r = redis.Redis(host=a.host, port=a.port, decode_responses=True)
    for state, _last in follow(r, a.prefix, a.stream):
        queues = state.get(f"{a.prefix}:queues", {})
        print(", ".join(f"{q}: {v['waiting']} waiting, {v['answering']} answering" for q, v in queues.items()))


if __name__ == "__main__":
    main()
