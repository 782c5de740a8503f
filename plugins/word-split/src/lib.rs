//! Splits text into lower-case words, one output event per word.
//!
//! Reads the string field `field` (default `text`) of JSON events; emits
//! `{"word": "..."}` for each word of at least `min-length` letters (default 1).
//! Reports the counter `words` (words emitted) and the gauge `most-words` (the most
//! words one event gave), which the host shows in its summary and on Prometheus.

use eddy_sdk::serde::Deserialize;
use eddy_sdk::{Context, Emitter, Error, Event, FlatMap, Value, json};

#[derive(Deserialize)]
#[serde(crate = "eddy_sdk::serde", rename_all = "kebab-case")]
struct Params {
    #[serde(default = "default_field")]
    field: String,
    #[serde(default = "one")]
    min_length: usize,
}

fn default_field() -> String {
    "text".into()
}

fn one() -> usize {
    1
}

/// The flat-map operator.
pub struct WordSplit {
    params: Params,
    word: String,
    most_words: usize,
}

impl FlatMap for WordSplit {
    fn open(ctx: &Context) -> Result<Self, Error> {
        Ok(WordSplit {
            params: ctx.params()?,
            word: String::new(),
            most_words: 0,
        })
    }

    fn flat_map(&mut self, event: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        let value: Value = event.json()?;
        let text = value
            .get(&self.params.field)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::msg(format_args!("no string field {:?}", self.params.field)))?;
        let mut words = 0;
        for raw in text.split(|c: char| !c.is_alphanumeric()) {
            if raw.chars().count() < self.params.min_length {
                continue;
            }
            self.word.clear();
            self.word.extend(raw.chars().flat_map(char::to_lowercase));
            out.json(&json!({ "word": self.word }))?;
            words += 1;
        }
        eddy_sdk::metrics::counter_add("words", words as u64);
        if words > self.most_words {
            self.most_words = words;
            eddy_sdk::metrics::gauge_set("most-words", words as f64);
        }
        Ok(())
    }
}

eddy_sdk::export_flat_map!(WordSplit);
