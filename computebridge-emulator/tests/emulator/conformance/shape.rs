//! JSON shape comparison: every key the real service answered must be in the emulator's answer,
//! with the same JSON type. Values may differ (ids, times, tokens); a recorded `null` matches
//! anything, absence included; array items are compared by resource id, else the first ones.

use serde_json::Value;

pub fn compare(recorded: &Value, actual: &Value, at: &str, problems: &mut Vec<String>) {
    match (recorded, actual) {
        (Value::Null, _) => {}
        (Value::Object(expected), Value::Object(got)) => {
            for (key, value) in expected {
                match got.get(key) {
                    Some(other) => compare(value, other, &format!("{at}.{key}"), problems),
                    None if value.is_null() => {}
                    None => problems.push(format!("missing {at}.{key}")),
                }
            }
        }
        (Value::Array(expected), Value::Array(got)) => {
            // Resources are matched by the last segment of their `id` (other environments hold
            // other resources); anything else by position.
            let name = |v: &Value| {
                v["id"]
                    .as_str()
                    .map(|id| id.rsplit('/').next().unwrap_or("").to_ascii_lowercase())
            };
            if expected.first().and_then(name).is_some() {
                for (i, item) in expected.iter().enumerate() {
                    if let Some(other) = got
                        .iter()
                        .find(|g| name(g).is_some() && name(g) == name(item))
                    {
                        compare(item, other, &format!("{at}[{i}]"), problems);
                    }
                }
            } else if let (Some(first), Some(other)) = (expected.first(), got.first()) {
                compare(first, other, &format!("{at}[0]"), problems);
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        (expected, got) => problems.push(format!(
            "{at}: recorded {} but got {}",
            kind(expected),
            kind(got)
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn finds_missing_keys_and_wrong_types() {
        let mut problems = Vec::new();
        super::compare(
            &json!({"a": 1, "b": {"c": "x", "d": [{"e": true}]}, "n": null}),
            &json!({"a": 2.5, "b": {"c": 3, "d": [{}]}, "extra": 1}),
            "$",
            &mut problems,
        );
        assert_eq!(
            problems,
            [
                "$.b.c: recorded a string but got a number",
                "missing $.b.d[0].e"
            ]
        );
    }
}
