//! Reading a few fields of a JSON object without building the object: the hot paths
//! (`key-by`, the digest sink) need one or two values of every event, and a full
//! `serde_json::Value` costs a map allocation per event.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The bytes a JSON value keys by: strings as their text, anything else as JSON.
pub fn key_bytes(value: &serde_json::Value) -> Vec<u8> {
    match value {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// The values of `names` in the JSON object `value`, as raw JSON text borrowed from it
/// (`None`: absent). Fails if `value` is not one JSON object.
pub fn pick<'de, S: AsRef<str>>(
    value: &'de [u8],
    names: &[S],
) -> Result<Vec<Option<&'de RawValue>>, serde_json::Error> {
    let mut picked = vec![None; names.len()];
    pick_into(value, names, &mut picked)?;
    Ok(picked)
}

/// [`pick`] into `picked` (one slot per name), allocating nothing.
pub fn pick_into<'de, S: AsRef<str>>(
    value: &'de [u8],
    names: &[S],
    picked: &mut [Option<&'de RawValue>],
) -> Result<(), serde_json::Error> {
    picked.fill(None);
    let mut de = serde_json::Deserializer::from_slice(value);
    Pick { names, picked }.deserialize(&mut de)?;
    de.end()
}

/// The value at the dotted `path` (`user.id` as `["user", "id"]`), `None` if a part is
/// absent or not an object.
pub fn path<'de, S: AsRef<str>>(
    value: &'de [u8],
    path: &[S],
) -> Result<Option<&'de RawValue>, serde_json::Error> {
    let mut current = value;
    let mut found = None;
    for (i, name) in path.iter().enumerate() {
        if i > 0 && !current.starts_with(b"{") {
            return Ok(None);
        }
        let mut one = [None];
        pick_into(current, std::slice::from_ref(name), &mut one)?;
        let Some(raw) = one[0] else {
            return Ok(None);
        };
        current = raw.get().as_bytes();
        found = Some(raw);
    }
    Ok(found)
}

/// A JSON string's text, or `None` if `raw` is not a string.
pub fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    raw.get()
        .starts_with('"')
        .then(|| serde_json::from_str(raw.get()).ok())
        .flatten()
}

struct Pick<'n, 'p, 'de, S> {
    names: &'n [S],
    picked: &'p mut [Option<&'de RawValue>],
}

impl<'de, S: AsRef<str>> DeserializeSeed<'de> for Pick<'_, '_, 'de, S> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: AsRef<str>> Visitor<'de> for Pick<'_, '_, 'de, S> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match self.names.iter().position(|n| n.as_ref() == key) {
                Some(i) => self.picked[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_paths_are_read_as_raw_json() {
        let v = br#"{"a": 1, "b": {"c": "x\ty", "d": [1, 2]}, "e": null}"#;
        let picked = pick(v, &["e", "a", "z"]).unwrap();
        let texts: Vec<_> = picked.iter().map(|r| r.map(RawValue::get)).collect();
        assert_eq!(texts, [Some("null"), Some("1"), None]);
        let c = path(v, &["b", "c"]).unwrap().unwrap();
        assert_eq!(string(c).as_deref(), Some("x\ty"));
        assert!(
            path(v, &["a", "c"]).unwrap().is_none(),
            "1 is not an object"
        );
        assert!(path(v, &["b", "z"]).unwrap().is_none());
        assert!(pick(b"[1]", &["a"]).is_err());
        assert!(pick(br#"{"a":1} x"#, &["a"]).is_err());
    }
}
