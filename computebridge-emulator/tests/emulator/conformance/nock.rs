//! Reads nock recordings: `nock('origin').verb('path', body?).reply(status, body, {headers})`
//! chains, with a small reader for the JavaScript literals they contain.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::recordings::Interaction;

const VERBS: [&str; 6] = ["get", "post", "put", "delete", "patch", "head"];

struct Reader<'a> {
    chars: Vec<char>,
    at: usize,
    _text: &'a str,
}

impl Reader<'_> {
    fn skip_space(&mut self) {
        while self.at < self.chars.len() && self.chars[self.at].is_whitespace() {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn identifier(&mut self) -> String {
        self.skip_space();
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
        {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn string(&mut self) -> String {
        let quote = self.chars[self.at];
        self.at += 1;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            self.at += 1;
            match c {
                c if c == quote => break,
                '\\' => {
                    let escaped = self.chars[self.at];
                    self.at += 1;
                    match escaped {
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => {
                            let hex: String = self.chars[self.at..self.at + 4].iter().collect();
                            self.at += 4;
                            out.push(
                                char::from_u32(u32::from_str_radix(&hex, 16).unwrap_or(63))
                                    .unwrap_or('?'),
                            );
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
        out
    }

    /// A JavaScript literal: string, number, object, array, true/false/null.
    fn literal(&mut self) -> Value {
        self.skip_space();
        match self.peek() {
            Some('\'' | '"') => Value::String(self.string()),
            Some('{') => {
                self.at += 1;
                let mut object = Map::new();
                while !self.eat('}') {
                    self.skip_space();
                    let key = match self.peek() {
                        Some('\'' | '"') => self.string(),
                        _ => self.identifier(),
                    };
                    assert!(self.eat(':'), "expected ':' after key {key}");
                    let value = self.literal();
                    object.insert(key, value);
                    self.eat(',');
                }
                Value::Object(object)
            }
            Some('[') => {
                self.at += 1;
                let mut items = Vec::new();
                while !self.eat(']') {
                    items.push(self.literal());
                    self.eat(',');
                }
                Value::Array(items)
            }
            _ => {
                let word = self.identifier_or_number();
                match word.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" | "undefined" => Value::Null,
                    number => serde_json::from_str(number).unwrap_or(Value::Null),
                }
            }
        }
    }

    fn identifier_or_number(&mut self) -> String {
        self.skip_space();
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn arguments(&mut self) -> Vec<Value> {
        let mut args = Vec::new();
        while !self.eat(')') {
            args.push(self.literal());
            self.eat(',');
        }
        args
    }

    /// Skips a parenthesised argument list it does not read (e.g. a function).
    fn skip_arguments(&mut self) {
        let mut depth = 1;
        while depth > 0 {
            match self.peek() {
                Some('(') => depth += 1,
                Some(')') => depth -= 1,
                Some('\'' | '"') => {
                    self.string();
                    continue;
                }
                None => return,
                _ => {}
            }
            self.at += 1;
        }
    }
}

pub fn parse(text: &str) -> Vec<Interaction> {
    let mut reader = Reader {
        chars: text.chars().collect(),
        at: 0,
        _text: text,
    };
    let mut interactions = Vec::new();
    let source: String = reader.chars.iter().collect();
    let mut search_from = 0;
    while let Some(found) = source[search_from..].find("nock(") {
        let start = search_from + found + "nock(".len();
        reader.at = source[..start].chars().count();
        reader.skip_space();
        let origin = reader.string();
        reader.eat(')');
        let mut pending: Option<(String, String, Option<String>)> = None;
        while reader.eat('.') {
            let name = reader.identifier();
            assert!(reader.eat('('), "expected '(' after .{name}");
            if VERBS.contains(&name.as_str()) {
                let args = reader.arguments();
                let path = args[0].as_str().unwrap_or("").to_owned();
                let body = match args.get(1) {
                    Some(Value::String(s)) if s == "*" => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                    None => None,
                };
                pending = Some((name.to_ascii_uppercase(), path, body));
            } else if name == "reply" {
                let args = reader.arguments();
                let (method, full_path, request_body) = pending.take().expect("reply after a verb");
                let (path, query) = full_path.split_once('?').unwrap_or((&full_path, ""));
                let response_headers: BTreeMap<String, String> = args
                    .get(2)
                    .and_then(Value::as_object)
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| {
                                (
                                    k.to_ascii_lowercase(),
                                    v.as_str()
                                        .map(str::to_owned)
                                        .unwrap_or_else(|| v.to_string()),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let response_body = match args.get(1) {
                    Some(Value::String(s)) if s.trim().is_empty() => None,
                    Some(Value::String(s)) => serde_json::from_str(s)
                        .ok()
                        .or(Some(Value::String(s.clone()))),
                    Some(Value::Null) | None => None,
                    Some(other) => Some(other.clone()),
                };
                interactions.push(Interaction {
                    method,
                    origin: origin.trim_end_matches(":443").to_owned(),
                    path: path.to_owned(),
                    query: query.to_owned(),
                    request_body,
                    status: args[0].as_u64().unwrap_or(0) as u16,
                    response_headers,
                    response_body,
                    auth_recorded: None,
                });
            } else {
                reader.skip_arguments();
            }
        }
        search_from = source[..]
            .char_indices()
            .nth(reader.at)
            .map(|(i, _)| i)
            .unwrap_or(source.len())
            .max(start);
    }
    interactions
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_chain() {
        let text = r#"nock('https://a.b.batch.azure.com:443')
  .filteringRequestBody(function (path) { return '*';})
.post('/pools/p/resize?api-version=1', '*')
  .reply(202, "", { etag: '0x1', 'request-id': 'r' })
  .get('/pools/p?api-version=1')
  .reply(200, "{\r\n  \"id\":\"p\"}", {});"#;
        let interactions = super::parse(text);
        assert_eq!(interactions.len(), 2);
        assert_eq!(
            (
                interactions[0].method.as_str(),
                interactions[0].path.as_str(),
                interactions[0].status
            ),
            ("POST", "/pools/p/resize", 202)
        );
        assert_eq!(interactions[0].response_headers["etag"], "0x1");
        assert_eq!(interactions[1].response_body.as_ref().unwrap()["id"], "p");
        assert_eq!(interactions[1].origin, "https://a.b.batch.azure.com");
    }
}
