//! Where each node of a job file is, so that an error points at the line and column of
//! the value it is about, not at the first line that happens to contain a word.
//!
//! The parser keeps a position for every value it reads; this module walks the
//! document once and indexes those positions by path (`steps[2].parallelism`).

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

/// A 1-based line and column.
pub type LineColumn = (usize, usize);

/// Deserializes `text` into `T`, or says where and what is wrong with it.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, (Option<LineColumn>, String)> {
    // YAML 1.2's core schema, as job files have always been read: `n`, `y`, `no` and
    // `off` are strings, not booleans.
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let e = e.without_snippet();
        let message = UserMessageFormatter.format_message(e).into_owned();
        let location = e
            .location()
            .filter(|l| l.line() > 0)
            .map(|l| (l.line() as usize, l.column() as usize))
            .map(|at| unknown_key(text, at, &message).unwrap_or(at));
        (location, message)
    })
}

/// Where an unknown key is: the parser places one of an internally tagged mapping (a
/// source, a sink) at the mapping that holds it.
fn unknown_key(text: &str, mapping: LineColumn, message: &str) -> Option<LineColumn> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    let positions = Positions::of(text);
    positions
        .0
        .iter()
        .filter(|(_, at)| **at == mapping)
        .find_map(|(path, _)| {
            // The mapping itself, or its first entry, is at the reported place.
            let parent = path.rfind(['.', '[']).map_or("", |i| &path[..i]);
            [path.as_str(), parent].into_iter().find_map(|p| {
                let sep = if p.is_empty() { "" } else { "." };
                positions.0.get(&format!("{p}{sep}{key}")).copied()
            })
        })
}

/// The position of every node of a document, by path.
#[derive(Debug, Default)]
pub struct Positions(HashMap<String, LineColumn>);

impl Positions {
    /// Indexes `text`; a document that does not parse has no positions (its syntax
    /// error is reported by [`parse`]).
    pub fn of(text: &str) -> Positions {
        let mut positions = Positions::default();
        if let Ok(root) = serde_saphyr::from_str::<Spanned<Node>>(text) {
            positions.index(String::new(), &root);
        }
        positions
    }

    /// Where `path` is, or else its nearest enclosing node that the file has (a key
    /// left out takes its position from the mapping that lacks it).
    pub fn find(&self, path: &str) -> Option<LineColumn> {
        let mut path = path;
        loop {
            if let Some(p) = self.0.get(path) {
                return Some(*p);
            }
            path = &path[..path.rfind(['.', '['])?];
        }
    }

    fn index(&mut self, path: String, node: &Spanned<Node>) {
        let at = node.referenced;
        if at.line() > 0 {
            self.0
                .insert(path.clone(), (at.line() as usize, at.column() as usize));
        }
        match &node.value {
            Node::Map(entries) => {
                for (key, value) in entries {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    self.index(child, value);
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.index(format!("{path}[{i}]"), item);
                }
            }
            Node::Scalar => {}
        }
    }
}

/// A document's shape: what [`Positions`] needs to know of it.
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            entries.push((key.0, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// A mapping key as path text, whatever scalar it is written as.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }

            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }

            fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }

            fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }

            fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }

            fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }

            fn visit_unit<E>(self) -> Result<Key, E> {
                Ok(Key("null".into()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Key("{}".into()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Key, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Key("[]".into()))
            }
        }

        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
name: x
parallelism: 2
max-parallelism: 4
sources:
  - type: file
    path: a
  - type: generator
    parallelism: 9
steps:
  - { name: s, map: m.wasm }
";

    #[test]
    fn every_node_has_its_own_position() {
        let p = Positions::of(TEXT);
        assert_eq!(p.find("name"), Some((1, 7)));
        assert_eq!(p.find("parallelism"), Some((2, 14)));
        assert_eq!(p.find("max-parallelism"), Some((3, 18)));
        assert_eq!(p.find("sources[1].parallelism"), Some((8, 18)));
        assert_eq!(p.find("steps[0].map"), Some((10, 21)));
    }

    #[test]
    fn a_missing_node_falls_back_to_its_parent() {
        let p = Positions::of(TEXT);
        assert_eq!(p.find("sources[0].parallelism"), p.find("sources[0]"));
        assert!(p.find("sources[0]").is_some());
        assert_eq!(p.find("nothing.here"), None);
    }

    #[test]
    fn an_unknown_key_is_reported_where_it_is() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code, reason = "only deserialized")]
        struct S {
            a: Vec<T>,
        }
        // Internally tagged, as sources and sinks are: the parser loses the key's place.
        #[derive(Debug, Deserialize)]
        #[serde(tag = "type", deny_unknown_fields)]
        #[allow(dead_code, reason = "only deserialized")]
        enum T {
            X { b: u32 },
        }
        let text = "a:\n  - type: X\n    b: 1\n  - type: X\n    b: 2\n    c: 3\n";
        let (at, message) = parse::<S>(text).unwrap_err();
        assert_eq!(at.map(|(line, _)| line), Some(6), "{message}");
    }

    #[test]
    fn yaml_1_1_booleans_are_strings() {
        let v: std::collections::BTreeMap<String, serde_json::Value> =
            parse("a: { sum: n }\nb: off\nc: true\n").unwrap();
        assert_eq!(v["a"]["sum"], "n");
        assert_eq!(v["b"], "off");
        assert_eq!(v["c"], true);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let (at, message) = parse::<serde_json::Value>("a: [1\nb: 2\n").unwrap_err();
        assert!(at.is_some(), "{message}");
    }
}
