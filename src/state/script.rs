//! How the mirror writes to Redis: one Lua script, loaded once per connection
//! and called with EVALSHA. A call is atomic, so a reader never sees half of
//! an event's writes or half of a seed, and it can put the ID of the stream
//! entry it adds into `<prefix>:meta` in the same step, which a MULTI cannot.
//! Pure: it only writes RESP.

use serde_json::{Map, Value};

use super::model::{Change, Hash};
use crate::link::resp;

/// Each op uses the next key of KEYS, in order, so that every key a call
/// writes is declared (Redis Cluster routes by them). The one exception is
/// `C`, which also deletes the member hashes of the queues it finds.
pub const SCRIPT: &str = r#"-- mod_cc_events: the live state mirror's writer
local k, a, id = 1, 1, false
while a <= #ARGV do
  local op = ARGV[a]
  if op == 'X' then
    local n = tonumber(ARGV[a + 1])
    id = redis.call('XADD', KEYS[k], unpack(ARGV, a + 2, a + 1 + n))
    a = a + 2 + n
  elseif op == 'C' then
    for _, q in ipairs(redis.call('HKEYS', KEYS[k])) do
      redis.call('DEL', ARGV[a + 1] .. q)
    end
    redis.call('DEL', KEYS[k])
    a = a + 2
  elseif op == 'D' then
    redis.call('DEL', KEYS[k])
    a = a + 1
  elseif op == 'H' then
    local n = tonumber(ARGV[a + 1])
    for i = a + 2, a + 2 * n, 2 do
      redis.call('HSET', KEYS[k], ARGV[i], ARGV[i + 1])
    end
    a = a + 2 + 2 * n
  elseif op == 'R' then
    local n = tonumber(ARGV[a + 1])
    for i = a + 2, a + 1 + n do
      redis.call('HDEL', KEYS[k], ARGV[i])
    end
    a = a + 2 + n
  elseif op == 'M' then
    local n = tonumber(ARGV[a + 1])
    for i = a + 2, a + 2 * n, 2 do
      redis.call('HSET', KEYS[k], ARGV[i], ARGV[i + 1])
    end
    if id then
      redis.call('HSET', KEYS[k], 'stream_id', id)
    end
    a = a + 2 + 2 * n
  else
    return redis.error_reply('mod_cc_events state script: unknown op ' .. tostring(op))
  end
  k = k + 1
end
return id or 'OK'
"#;

/// The script's SHA1, as EVALSHA wants it.
pub fn sha() -> String {
    sha1_smol::Sha1::from(SCRIPT).digest().to_string()
}

/// `SCRIPT LOAD`, sent once on every new connection.
pub fn load(out: &mut Vec<u8>) {
    resp::command(out, &[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]);
}

/// The mirror's key names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    pub prefix: String,
}

impl Keys {
    pub fn hash(&self, h: &Hash) -> String {
        match h {
            Hash::Agents => format!("{}:agents", self.prefix),
            Hash::Queues => format!("{}:queues", self.prefix),
            Hash::Members(q) => format!("{}{q}", self.members_prefix()),
        }
    }

    pub fn meta(&self) -> String {
        format!("{}:meta", self.prefix)
    }

    pub fn members_prefix(&self) -> String {
        format!("{}:members:", self.prefix)
    }
}

/// One EVALSHA being put together.
#[derive(Default)]
pub struct Call {
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call {
    /// XADD to `stream` with `args` (everything after the key).
    pub fn xadd(&mut self, stream: &str, args: &[&[u8]]) {
        self.keys.push(stream.as_bytes().to_vec());
        self.args.push(b"X".to_vec());
        self.args.push(args.len().to_string().into_bytes());
        self.args.extend(args.iter().map(|a| a.to_vec()));
    }

    /// Deletes every hash of the mirror, including the members of queues
    /// only the old `queues` hash knows.
    pub fn clear(&mut self, keys: &Keys, queues: impl Iterator<Item = String>) {
        self.keys.push(keys.hash(&Hash::Queues).into_bytes());
        self.args.push(b"C".to_vec());
        self.args.push(keys.members_prefix().into_bytes());
        self.keys.push(keys.hash(&Hash::Agents).into_bytes());
        self.args.push(b"D".to_vec());
        self.keys.push(keys.meta().into_bytes());
        self.args.push(b"D".to_vec());
        for q in queues {
            self.keys.push(keys.hash(&Hash::Members(q)).into_bytes());
            self.args.push(b"D".to_vec());
        }
    }

    /// HSET and HDEL for the changes, one op per hash and kind.
    pub fn changes(&mut self, keys: &Keys, changes: &[Change]) {
        let mut hashes: Vec<&Hash> = Vec::new();
        for c in changes {
            if !hashes.contains(&&c.hash) {
                hashes.push(&c.hash);
            }
        }
        for h in hashes {
            let of = changes.iter().filter(|c| &c.hash == h);
            let sets: Vec<(&str, String)> = of
                .clone()
                .filter_map(|c| Some((c.field.as_str(), c.value.as_ref()?.to_string())))
                .collect();
            let dels: Vec<&str> = of
                .filter(|c| c.value.is_none())
                .map(|c| c.field.as_str())
                .collect();
            let key = keys.hash(h).into_bytes();
            if !sets.is_empty() {
                self.keys.push(key.clone());
                self.args.push(b"H".to_vec());
                self.args.push(sets.len().to_string().into_bytes());
                for (f, v) in sets {
                    self.args.push(f.as_bytes().to_vec());
                    self.args.push(v.into_bytes());
                }
            }
            if !dels.is_empty() {
                self.keys.push(key);
                self.args.push(b"R".to_vec());
                self.args.push(dels.len().to_string().into_bytes());
                self.args.extend(dels.iter().map(|f| f.as_bytes().to_vec()));
            }
        }
    }

    /// HSET on `<prefix>:meta`, plus `stream_id` when this call added a stream entry.
    pub fn meta(&mut self, keys: &Keys, pairs: &[(&str, &str)]) {
        self.keys.push(keys.meta().into_bytes());
        self.args.push(b"M".to_vec());
        self.args.push(pairs.len().to_string().into_bytes());
        for (f, v) in pairs {
            self.args.push(f.as_bytes().to_vec());
            self.args.push(v.as_bytes().to_vec());
        }
    }

    pub fn encode(&self, sha: &str, out: &mut Vec<u8>) {
        let n = self.keys.len().to_string();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(3 + self.keys.len() + self.args.len());
        parts.push(b"EVALSHA");
        parts.push(sha.as_bytes());
        parts.push(n.as_bytes());
        parts.extend(self.keys.iter().map(|k| k.as_slice()));
        parts.extend(self.args.iter().map(|a| a.as_slice()));
        resp::command(out, &parts);
    }
}

/// The stream entry's `state` field: `{"<key>": {"<field>": value or null}}`,
/// which a consumer applies to its copy of the snapshot as it is.
pub fn delta(keys: &Keys, changes: &[Change]) -> String {
    let mut out: Map<String, Value> = Map::new();
    for c in changes {
        let h = out
            .entry(keys.hash(&c.hash))
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(h) = h.as_object_mut() {
            h.insert(c.field.clone(), c.value.clone().unwrap_or(Value::Null));
        }
    }
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys() -> Keys {
        Keys {
            prefix: "{cc}:fs1".into(),
        }
    }

    #[test]
    fn each_op_uses_the_next_key_so_that_every_written_key_is_declared() {
        let mut call = Call::default();
        call.xadd("s", &[b"MAXLEN", b"~", b"10", b"*", b"event", b"E"]);
        call.changes(
            &keys(),
            &[
                Change {
                    hash: Hash::Agents,
                    field: "a".into(),
                    value: Some(json!({"status": "Available"})),
                },
                Change {
                    hash: Hash::Members("q".into()),
                    field: "m".into(),
                    value: None,
                },
            ],
        );
        call.meta(&keys(), &[("sequence", "7")]);
        let mut out = Vec::new();
        call.encode("abc", &mut out);
        let text = String::from_utf8(out).unwrap();
        // Headers (`*N`, `$N`) out, arguments in (the bare `*` is XADD's ID).
        let parts: Vec<&str> = text
            .split("\r\n")
            .filter(|l| !(l.starts_with('$') || (l.starts_with('*') && l.len() > 1)))
            .collect();
        assert_eq!(
            parts[..7],
            [
                "EVALSHA",
                "abc",
                "4",
                "s",
                "{cc}:fs1:agents",
                "{cc}:fs1:members:q",
                "{cc}:fs1:meta"
            ]
        );
        assert_eq!(
            parts[7..],
            [
                "X",
                "6",
                "MAXLEN",
                "~",
                "10",
                "*",
                "event",
                "E",
                "H",
                "1",
                "a",
                "{\"status\":\"Available\"}",
                "R",
                "1",
                "m",
                "M",
                "1",
                "sequence",
                "7",
                ""
            ]
        );
        // One op for each declared key, as the script consumes them.
        let ops = parts[7..]
            .iter()
            .filter(|p| ["X", "C", "D", "H", "R", "M"].contains(p))
            .count();
        assert_eq!(ops, 4);
    }

    #[test]
    fn the_delta_is_keyed_by_full_key_names_with_null_for_removals() {
        let d = delta(
            &keys(),
            &[Change {
                hash: Hash::Members("q".into()),
                field: "m".into(),
                value: None,
            }],
        );
        assert_eq!(d, r#"{"{cc}:fs1:members:q":{"m":null}}"#);
    }

    #[test]
    fn the_sha_is_the_scripts() {
        assert_eq!(sha().len(), 40);
        assert_eq!(
            sha(),
            sha1_smol::Sha1::from(SCRIPT.as_bytes())
                .digest()
                .to_string()
        );
    }
}
