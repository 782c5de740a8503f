//! Durations as job files write them: `500ms`, `10s`, `5m`, `2h`, `1d`.

use std::time::Duration;

use serde::Deserialize;

/// A duration in a job file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    /// Parses `500ms`, `10s`, `5m`, `2h`, `1d` (or a plain number of milliseconds).
    pub fn parse(text: &str) -> Result<Span, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s or 5m"))?;
        let ms = match unit.trim() {
            "" | "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => return Err(format!("unknown duration unit {other:?} in {text:?}")),
        };
        Ok(Span(Duration::from_millis(n * ms)))
    }

    /// Milliseconds, the unit of event time.
    pub fn millis(self) -> i64 {
        self.0.as_millis() as i64
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Span(Duration::from_millis(ms))),
            Raw::Text(t) => Span::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(Span::parse("500ms").unwrap().millis(), 500);
        assert_eq!(Span::parse("10s").unwrap().millis(), 10_000);
        assert_eq!(Span::parse("2h").unwrap().millis(), 7_200_000);
        assert_eq!(Span::parse("250").unwrap().millis(), 250);
        assert!(Span::parse("ten seconds").is_err());
    }
}
