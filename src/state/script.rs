//! How the mirror writes to Redis. A seed, a refresh or an expiry is one call
//! of a Lua script, loaded once per connection and called with EVALSHA; a
//! batch of events is one MULTI ... EXEC of native commands, ended by a small
//! call of the same script (or, on a Redis Cluster, one call of it). Each is
//! atomic, so a reader never sees half of a batch or half of a seed, and the
//! script puts the ID of the stream entry it adds into `<prefix>:meta` in the
//! same step, which a plain MULTI cannot. Pure: it only writes RESP.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

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

/// A call's keys or arguments, back to back in one buffer.
#[derive(Default)]
struct Parts {
    bytes: Vec<u8>,
    /// Where each one ends in `bytes`.
    ends: Vec<usize>,
}

impl Parts {
    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        self.ends.push(self.bytes.len());
    }

    fn push_count(&mut self, n: usize) {
        // Writing into a Vec cannot fail.
        let _ = write!(self.bytes, "{n}");
        self.ends.push(self.bytes.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| &self.bytes[a..b])
    }
}

/// One EVALSHA being put together.
#[derive(Default)]
pub struct Call {
    keys: Parts,
    args: Parts,
}

impl Call {
    /// Empty again, keeping its buffers.
    pub fn reset(&mut self) {
        self.keys.clear();
        self.args.clear();
    }

    /// XADD to `stream` with `args` (everything after the key).
    pub fn xadd(&mut self, stream: &str, args: &[&[u8]]) {
        self.keys.push(stream.as_bytes());
        self.args.push(b"X");
        self.args.push_count(args.len());
        for a in args {
            self.args.push(a);
        }
    }

    /// Deletes every hash of the mirror, including the members of queues
    /// only the old `queues` hash knows.
    pub fn clear(&mut self, keys: &Keys, queues: impl Iterator<Item = String>) {
        self.keys.push(keys.hash(&Hash::Queues).as_bytes());
        self.args.push(b"C");
        self.args.push(keys.members_prefix().as_bytes());
        self.keys.push(keys.hash(&Hash::Agents).as_bytes());
        self.args.push(b"D");
        self.keys.push(keys.meta().as_bytes());
        self.args.push(b"D");
        for q in queues {
            self.keys.push(keys.hash(&Hash::Members(q)).as_bytes());
            self.args.push(b"D");
        }
    }

    /// HSET and HDEL for the changes, one op per hash and kind, the hashes in
    /// the order they first appear, each field once (see [`by_hash`]).
    pub fn changes(&mut self, keys: &Keys, changes: &[Change]) {
        for (h, fields) in by_hash(changes) {
            let key = keys.hash(h);
            let sets = fields.iter().filter(|(_, v)| v.is_some()).count();
            if sets > 0 {
                self.keys.push(key.as_bytes());
                self.args.push(b"H");
                self.args.push_count(sets);
                for (f, v) in &fields {
                    if let Some(v) = v {
                        self.args.push(f.as_bytes());
                        self.args.push(v.as_bytes());
                    }
                }
            }
            let dels = fields.len() - sets;
            if dels > 0 {
                self.keys.push(key.as_bytes());
                self.args.push(b"R");
                self.args.push_count(dels);
                for (f, v) in &fields {
                    if v.is_none() {
                        self.args.push(f.as_bytes());
                    }
                }
            }
        }
    }

    /// HSET on `<prefix>:meta`, plus `stream_id` when this call added a stream entry.
    pub fn meta(&mut self, keys: &Keys, pairs: &[(&str, &str)]) {
        self.keys.push(keys.meta().as_bytes());
        self.args.push(b"M");
        self.args.push_count(pairs.len());
        for (f, v) in pairs {
            self.args.push(f.as_bytes());
            self.args.push(v.as_bytes());
        }
    }

    pub fn encode(&self, sha: &str, out: &mut Vec<u8>) {
        self.encode_as(b"EVALSHA", sha.as_bytes(), out);
    }

    /// As EVAL, with the script itself: inside a MULTI, where a NOSCRIPT
    /// (a server that lost the script) would fail this call alone, after
    /// the transaction's other writes went through.
    pub fn encode_eval(&self, out: &mut Vec<u8>) {
        self.encode_as(b"EVAL", SCRIPT.as_bytes(), out);
    }

    fn encode_as(&self, verb: &[u8], script: &[u8], out: &mut Vec<u8>) {
        let n = self.keys.len().to_string();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(3 + self.keys.len() + self.args.len());
        parts.push(verb);
        parts.push(script);
        parts.push(n.as_bytes());
        parts.extend(self.keys.iter());
        parts.extend(self.args.iter());
        resp::command(out, &parts);
    }
}

/// A hash's fields, each with its new value or None (removed).
type Fields<'a> = Vec<(&'a str, Option<&'a str>)>;

/// The changes by hash, the hashes in the order they first appear. A field
/// changed more than once (several events of one batch) is there once, with
/// its last value: the write is atomic, so only the end state is ever seen.
fn by_hash(changes: &[Change]) -> Vec<(&Hash, Fields<'_>)> {
    let mut out: Vec<(&Hash, Fields<'_>)> = Vec::new();
    let mut hash_at: HashMap<&Hash, usize> = HashMap::new();
    let mut field_at: HashMap<(&Hash, &str), usize> = HashMap::with_capacity(changes.len());
    for c in changes {
        let h = *hash_at.entry(&c.hash).or_insert_with(|| {
            out.push((&c.hash, Vec::new()));
            out.len() - 1
        });
        let fields = &mut out[h].1;
        let value = c.value.as_deref();
        match field_at.entry((&c.hash, c.field.as_str())) {
            Entry::Occupied(i) => fields[*i.get()].1 = value,
            Entry::Vacant(slot) => {
                slot.insert(fields.len());
                fields.push((c.field.as_str(), value));
            }
        }
    }
    out
}

/// A batch's writes as one MULTI ... EXEC: its XADDs, its hash writes
/// (each field once), then a small EVAL of the script that adds the last
/// event's entry, so that it knows that entry's ID, and puts the ID and the
/// sequence into `meta`. The same atomic step as one script call for the
/// whole batch, without Redis copying every entry and value into Lua and
/// out again, which cost it 3 to 4 us an event. Not for a Redis Cluster,
/// whose link routes each command on its own: there the batch is one call.
#[derive(Default)]
pub struct Transaction {
    /// Every XADD but the last, as commands.
    xadds: Vec<u8>,
    count: usize,
    /// The last XADD's stream and arguments, for the script call; kept
    /// across batches, so that steady traffic allocates nothing here.
    last_stream: String,
    last: Parts,
}

impl Transaction {
    pub fn xadd(&mut self, stream: &str, args: &[&[u8]]) {
        if self.last.len() > 0 {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(self.last.len() + 2);
            parts.push(b"XADD");
            parts.push(self.last_stream.as_bytes());
            parts.extend(self.last.iter());
            resp::command(&mut self.xadds, &parts);
            self.count += 1;
            self.last.clear();
        }
        if self.last_stream != stream {
            self.last_stream.clear();
            self.last_stream.push_str(stream);
        }
        for a in args {
            self.last.push(a);
        }
    }

    /// Writes the transaction; returns how many replies it gets. Leaves it
    /// empty, its buffer kept.
    pub fn finish(
        &mut self,
        keys: &Keys,
        changes: &[Change],
        meta: &[(&str, &str)],
        out: &mut Vec<u8>,
    ) -> usize {
        let values: usize = changes
            .iter()
            .map(|c| c.field.len() + c.value.as_ref().map_or(0, String::len) + 32)
            .sum();
        out.reserve(self.xadds.len() + values + 4096);
        resp::command(out, &[b"MULTI"]);
        out.extend_from_slice(&self.xadds);
        let mut replies = 1 + self.count;
        for (h, fields) in by_hash(changes) {
            let key = keys.hash(h);
            let mut sets: Vec<&[u8]> = vec![b"HSET", key.as_bytes()];
            let mut dels: Vec<&[u8]> = vec![b"HDEL", key.as_bytes()];
            for (f, v) in &fields {
                match v {
                    Some(v) => sets.extend_from_slice(&[f.as_bytes(), v.as_bytes()]),
                    None => dels.push(f.as_bytes()),
                }
            }
            for c in [sets, dels] {
                if c.len() > 2 {
                    resp::command(out, &c);
                    replies += 1;
                }
            }
        }
        let mut call = Call::default();
        if self.last.len() > 0 {
            let args: Vec<&[u8]> = self.last.iter().collect();
            call.xadd(&self.last_stream, &args);
        }
        call.meta(keys, meta);
        call.encode_eval(out);
        resp::command(out, &[b"EXEC"]);
        self.xadds.clear();
        self.count = 0;
        self.last.clear();
        replies + 2
    }
}

/// The stream entry's `state` field: `{"<key>": {"<field>": value or null}}`,
/// which a consumer applies to its copy of the snapshot as it is. Keys and
/// fields in order (as a JSON object of serde_json's sorts them); a field
/// changed twice shows its last value.
pub fn delta(keys: &Keys, changes: &[Change]) -> String {
    let mut by_key: BTreeMap<String, BTreeMap<&str, &str>> = BTreeMap::new();
    for c in changes {
        by_key
            .entry(keys.hash(&c.hash))
            .or_default()
            .insert(c.field.as_str(), c.value.as_deref().unwrap_or("null"));
    }
    let size: usize = changes
        .iter()
        .filter_map(|c| c.value.as_ref())
        .map(String::len)
        .sum();
    let mut out: Vec<u8> = Vec::with_capacity(size + 64 * changes.len() + 2);
    out.push(b'{');
    for (i, (key, fields)) in by_key.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(&mut out, key);
        out.extend_from_slice(b":{");
        for (j, (field, value)) in fields.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            json_str(&mut out, field);
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'}');
    }
    out.push(b'}');
    // Only JSON text and whole UTF-8 strings went in.
    String::from_utf8(out).unwrap_or_default()
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    /// The `state` field as one serde_json object, as it was first written.
    fn delta_as_one_object(keys: &Keys, changes: &[Change]) -> String {
        let mut out: Map<String, Value> = Map::new();
        for c in changes {
            let h = out
                .entry(keys.hash(&c.hash))
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(h) = h.as_object_mut() {
                let v = c
                    .value
                    .as_deref()
                    .map_or(Value::Null, |v| serde_json::from_str(v).unwrap());
                h.insert(c.field.clone(), v);
            }
        }
        Value::Object(out).to_string()
    }

    fn change(hash: Hash, field: &str, value: Option<Value>) -> Change {
        Change {
            hash,
            field: field.into(),
            value: value.map(|v| v.to_string()),
        }
    }

    #[test]
    fn the_state_delta_is_byte_for_byte_the_serde_json_object() {
        let keys = Keys {
            prefix: "cc\"state".into(),
        };
        let changes = vec![
            change(Hash::Members("q\u{e9}\n".into()), "m2", None),
            change(
                Hash::Agents,
                "b@x",
                Some(json!({"name": "b", "n": 1, "s": "tab\there \"quoted\" \u{1}"})),
            ),
            change(Hash::Queues, "q", Some(json!({"agents": [], "waiting": 0}))),
            change(Hash::Agents, "a@x", Some(json!("plain"))),
            change(
                Hash::Members("q\u{e9}\n".into()),
                "m1",
                Some(json!({"state": "Waiting"})),
            ),
            // The same field again: the last value wins.
            change(Hash::Agents, "b@x", Some(json!({"name": "b", "n": 2}))),
            change(Hash::Members("a".into()), "m0", None),
        ];
        assert_eq!(delta(&keys, &changes), delta_as_one_object(&keys, &changes));
        assert_eq!(delta(&keys, &[]), delta_as_one_object(&keys, &[]));
    }

    #[test]
    fn a_call_groups_the_changes_by_hash_in_first_seen_order() {
        let keys = Keys { prefix: "p".into() };
        let changes = vec![
            change(Hash::Members("q".into()), "m1", Some(json!({"a": 1}))),
            change(Hash::Queues, "q", Some(json!(2))),
            change(Hash::Members("q".into()), "m2", None),
            change(Hash::Members("q".into()), "m3", Some(json!("x"))),
        ];
        let mut call = Call::default();
        call.xadd("s", &[b"*", b"f", b"v"]);
        call.changes(&keys, &changes);
        call.meta(&keys, &[("sequence", "7")]);
        let mut out = Vec::new();
        call.encode("sha", &mut out);
        let mut want = Vec::new();
        resp::command(
            &mut want,
            &[
                b"EVALSHA",
                b"sha",
                b"5",
                b"s",
                b"p:members:q",
                b"p:members:q",
                b"p:queues",
                b"p:meta",
                b"X",
                b"3",
                b"*",
                b"f",
                b"v",
                b"H",
                b"2",
                b"m1",
                b"{\"a\":1}",
                b"m3",
                b"\"x\"",
                b"R",
                b"1",
                b"m2",
                b"H",
                b"1",
                b"q",
                b"2",
                b"M",
                b"1",
                b"sequence",
                b"7",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
    }
}

#[cfg(test)]
mod bytes_tests {
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
                    value: Some(json!({"status": "Available"}).to_string()),
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

#[cfg(test)]
mod group_tests {
    use super::*;

    fn change(field: &str, value: Option<&str>) -> Change {
        Change {
            hash: Hash::Agents,
            field: field.into(),
            value: value.map(str::to_string),
        }
    }

    fn args(call: &Call) -> Vec<String> {
        let mut out = Vec::new();
        call.encode("sha", &mut out);
        let text = String::from_utf8(out).unwrap();
        text.split("\r\n")
            .filter(|l| !(l.starts_with('$') || (l.starts_with('*') && l.len() > 1)))
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_field_several_events_changed_is_written_once_with_its_last_value() {
        let keys = Keys { prefix: "p".into() };
        let mut call = Call::default();
        call.changes(
            &keys,
            &[
                change("a", Some("1")),
                change("b", Some("1")),
                change("a", Some("2")),
                // Set, then removed: only the removal.
                change("b", None),
                // Removed, then set again: only the new value.
                change("c", None),
                change("c", Some("3")),
            ],
        );
        assert_eq!(
            args(&call),
            [
                "EVALSHA", "sha", "2", "p:agents", "p:agents", "H", "2", "a", "2", "c", "3", "R",
                "1", "b"
            ]
        );
    }
}

#[cfg(test)]
mod transaction_tests {
    use super::*;

    /// Each command of `out` as its words.
    fn commands(out: &[u8]) -> Vec<Vec<String>> {
        let text = String::from_utf8(out.to_vec()).unwrap();
        let mut lines = text.split("\r\n");
        let mut out = Vec::new();
        while let Some(head) = lines.next() {
            let Some(n) = head.strip_prefix('*') else {
                break;
            };
            let n: usize = n.parse().unwrap();
            out.push(
                (0..n)
                    .map(|_| {
                        lines.next();
                        lines.next().unwrap().to_string()
                    })
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn a_batch_is_one_transaction_whose_script_call_adds_the_last_entry_and_meta() {
        let keys = Keys { prefix: "p".into() };
        let mut tx = Transaction::default();
        tx.xadd("s", &[b"*", b"n", b"1"]);
        tx.xadd("s", &[b"*", b"n", b"2"]);
        tx.xadd("s", &[b"*", b"n", b"3"]);
        let changes = [
            Change {
                hash: Hash::Agents,
                field: "a".into(),
                value: Some("1".into()),
            },
            Change {
                hash: Hash::Members("q".into()),
                field: "m".into(),
                value: None,
            },
            Change {
                hash: Hash::Agents,
                field: "a".into(),
                value: Some("2".into()),
            },
        ];
        let mut out = Vec::new();
        let replies = tx.finish(&keys, &changes, &[("sequence", "9")], &mut out);
        let c = commands(&out);
        let want: Vec<Vec<&str>> = vec![
            vec!["MULTI"],
            vec!["XADD", "s", "*", "n", "1"],
            vec!["XADD", "s", "*", "n", "2"],
            vec!["HSET", "p:agents", "a", "2"],
            vec!["HDEL", "p:members:q", "m"],
            vec![
                "EVAL", SCRIPT, "2", "s", "p:meta", "X", "3", "*", "n", "3", "M", "1", "sequence",
                "9",
            ],
            vec!["EXEC"],
        ];
        assert_eq!(c, want);
        assert_eq!(replies, want.len());
        // Empty again: the next batch starts afresh.
        let mut again = Vec::new();
        let replies = tx.finish(&keys, &[], &[], &mut again);
        assert_eq!(
            commands(&again),
            vec![
                vec!["MULTI"],
                vec!["EVAL", SCRIPT, "1", "p:meta", "M", "0"],
                vec!["EXEC"]
            ]
        );
        assert_eq!(replies, 3);
    }
}
