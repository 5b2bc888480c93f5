#!/usr/bin/env python3
"""Follow mod_cc_events in a Redis Cluster with sharded Pub/Sub (sharded-pubsub=true).

SPUBLISH delivers a message only on the shard (a master and its replicas)
that owns the channel's slot. So the subscriber asks the cluster which node
that is, SSUBSCRIBEs there, and asks again when that node goes away (its
replica takes over) or the slot moves (Redis then ends the subscription with
an sunsubscribe).

redis-py 4.3 (Debian 12's python3-redis) has no ssubscribe(), so the command
goes on a plain connection, as here; this works unchanged with redis-py 5
(checked with 5.3), which added RedisCluster(...).pubsub().ssubscribe().

    python3 cluster_ssubscribe.py 127.0.0.1:7000 callcenter_events [count]
"""
import sys
import time

import redis
from redis.cluster import RedisCluster


def follow(seed, channel, handle, count=None):
    host, port = seed.rsplit(":", 1)
    seen = 0
    while count is None or seen < count:
        try:
            cluster = RedisCluster(host=host, port=int(port))
            owner = cluster.get_node_from_key(channel)  # the master of the channel's slot
            cluster.close()
            conn = redis.Connection(host=owner.host, port=owner.port)
        except redis.RedisError:
            time.sleep(1)  # the seed is down or the cluster is failing over
            continue
        try:
            conn.send_command("SSUBSCRIBE", channel)
            while count is None or seen < count:
                kind, _channel, data = conn.read_response()
                if kind == b"smessage":
                    handle(data.decode())
                    seen += 1
                elif kind == b"sunsubscribe":
                    break  # the slot moved to another shard: ask again
        except redis.ConnectionError:
            pass  # the node went away: ask again
        finally:
            conn.disconnect()


if __name__ == "__main__":
    seed, channel = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else None
    follow(seed, channel, lambda payload: print(payload, flush=True), count)
