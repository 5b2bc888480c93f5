//! Every range the sample config and the README state is exactly what the
//! parser enforces: both ends accepted, one past either end refused.

// The harness provides the FreeSWITCH symbols the linked library refers to.
mod harness;

use std::collections::BTreeMap;

use mod_cc_events::config::Settings;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `range A..B` in the comment right before each `<param>` of the sample.
fn sample_ranges() -> BTreeMap<String, (i64, i64)> {
    let text =
        std::fs::read_to_string(root().join("conf/autoload_configs/cc_events.conf.xml")).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let mut out = BTreeMap::new();
    let mut comment = String::new();
    let settings = doc
        .descendants()
        .find(|n| n.has_tag_name("settings"))
        .unwrap();
    for n in settings.children() {
        if n.is_comment() {
            comment = n.text().unwrap_or_default().to_string();
        } else if n.has_tag_name("param") {
            if let Some(r) = range_in(&comment) {
                out.insert(n.attribute("name").unwrap().to_string(), r);
            }
            comment.clear();
        }
    }
    out
}

/// The README's configuration table: `| \`name\` | default | A..B | ... |`.
fn readme_ranges() -> BTreeMap<String, (i64, i64)> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let r = range_in(cells.get(3)?)?;
            Some((name.to_string(), r))
        })
        .collect()
}

fn range_in(text: &str) -> Option<(i64, i64)> {
    let at = text.find("..")?;
    let lo: String = text[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let hi: String = text[at + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((lo.parse().ok()?, hi.parse().ok()?))
}

/// Params whose valid values depend on another one: give that one room.
fn companions(name: &str, value: i64) -> Vec<(String, String)> {
    let mut p = vec![(name.to_string(), value.to_string())];
    match name {
        "reconnect-min-ms" => p.insert(0, ("reconnect-max-ms".into(), "600000".into())),
        "reconnect-max-ms" => p.insert(0, ("reconnect-min-ms".into(), "1".into())),
        _ => {}
    }
    p
}

fn accepts(name: &str, value: i64) -> bool {
    let params = companions(name, value);
    Settings::from_params(params.iter().map(|(n, v)| (n.as_str(), v.as_str()))).is_ok()
}

fn check(source: &str, ranges: &BTreeMap<String, (i64, i64)>) {
    assert!(ranges.len() >= 10, "{source}: found only {ranges:?}");
    for (name, &(lo, hi)) in ranges {
        assert!(
            accepts(name, lo),
            "{source}: {name} = {lo} (stated minimum) is refused"
        );
        assert!(
            accepts(name, hi),
            "{source}: {name} = {hi} (stated maximum) is refused"
        );
        assert!(
            !accepts(name, lo - 1),
            "{source}: {name} = {} is accepted",
            lo - 1
        );
        assert!(
            !accepts(name, hi + 1),
            "{source}: {name} = {} is accepted",
            hi + 1
        );
    }
}

#[test]
fn the_sample_configs_ranges_are_the_parsers() {
    check("sample config", &sample_ranges());
}

#[test]
fn the_readmes_ranges_are_the_parsers() {
    check("README", &readme_ranges());
}

#[test]
fn the_sample_and_the_readme_state_the_same_ranges() {
    assert_eq!(sample_ranges(), readme_ranges());
}
