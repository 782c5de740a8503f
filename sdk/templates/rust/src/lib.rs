//! {{name}}: an Eddy map plugin. Upper-cases the string field `field` (param, default
//! `text`) of every event and passes the rest through.

use eddy_sdk::{Context, Emitter, Error, Event, Map, Value};

/// The operator: one instance per subtask.
pub struct Plugin {
    field: String,
}

impl Map for Plugin {
    fn open(ctx: &Context) -> Result<Self, Error> {
        let field = ctx.param("field")?.unwrap_or_else(|| "text".to_owned());
        Ok(Plugin { field })
    }

    fn map(&mut self, event: &Event<'_>, out: &mut Emitter<'_>) -> Result<(), Error> {
        let mut value: Value = event.json()?;
        let text = value
            .get(&self.field)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::msg(format_args!("no string field {:?}", self.field)))?
            .to_uppercase();
        value[&self.field] = Value::String(text);
        out.json(&value)
    }
}

eddy_sdk::export_map!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_sdk::{Batch, json};

    #[test]
    fn upper_cases_the_field() {
        let mut op = Plugin::open(&Context::new(json!({}), "test", "{{name}}")).unwrap();
        let mut input = Batch::default();
        input.push_value(br#"{"id":1,"text":"hello"}"#).unwrap();
        let out = eddy_sdk::run_map(&mut op, &input).unwrap();
        assert_eq!(out.value(0), br#"{"id":1,"text":"HELLO"}"#);
    }
}
