//! Reads recorded SDK traffic in its four formats into one list of interactions: Java
//! (`networkCallRecords`), .NET (`Entries`), Python vcrpy YAML (`interactions`) and Node nock
//! scripts.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Interaction {
    pub method: String,
    /// Scheme and host as recorded (possibly sanitized, e.g. `http://localhost:1234`).
    pub origin: String,
    pub path: String,
    pub query: String,
    /// `None` when not recorded (nock filters bodies to `*`).
    pub request_body: Option<String>,
    pub status: u16,
    pub response_headers: BTreeMap<String, String>,
    pub response_body: Option<Value>,
    /// Whether the format says for certain that no `Authorization` header was sent.
    pub auth_recorded: Option<bool>,
}

pub fn load(path: &Path) -> Vec<Interaction> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.to_string_lossy();
    if name.ends_with(".nock.js") {
        return super::nock::parse(&text);
    }
    if name.ends_with(".yaml") {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let json = serde_json::to_value(yaml).unwrap();
        return json["interactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(from_vcr)
            .collect();
    }
    let json: Value = serde_json::from_str(&text).unwrap();
    if let Some(records) = json["networkCallRecords"].as_array() {
        return records.iter().map(from_java).collect();
    }
    let mut entries: Vec<Interaction> = json["Entries"]
        .as_array()
        .expect("a .NET session record")
        .iter()
        .map(from_dotnet)
        .collect();
    // Some recorders drop `Authorization` altogether; its absence means something only when the
    // recorder kept it elsewhere in the same session.
    if !entries.iter().any(|e| e.auth_recorded == Some(true)) {
        entries.iter_mut().for_each(|e| e.auth_recorded = None);
    }
    entries
}

fn split_url(url: &str) -> (String, String, String) {
    let (origin, rest) = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            let slash = after.find('/').unwrap_or(after.len());
            (url[..i + 3 + slash].to_owned(), after[slash..].to_owned())
        }
        None => (String::new(), url.to_owned()),
    };
    let (path, query) = rest.split_once('?').unwrap_or((&rest, ""));
    (origin, path.to_owned(), query.to_owned())
}

fn body_value(text: Option<&str>) -> Option<Value> {
    let text = text?.trim();
    if text.is_empty() {
        return None;
    }
    serde_json::from_str(text)
        .ok()
        .or(Some(Value::String(text.to_owned())))
}

fn headers(object: &Value, flatten_lists: bool) -> BTreeMap<String, String> {
    object
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Array(items) if flatten_lists => items
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "),
                        other => other.to_string(),
                    };
                    (k.to_ascii_lowercase(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn from_java(record: &Value) -> Interaction {
    let (origin, path, query) = split_url(record["Uri"].as_str().unwrap());
    let response = &record["Response"];
    let mut response_headers = headers(response, false);
    response_headers.remove("statuscode");
    response_headers.remove("body");
    Interaction {
        method: record["Method"].as_str().unwrap().to_owned(),
        origin,
        path,
        query,
        request_body: record["Body"].as_str().map(str::to_owned),
        status: response["StatusCode"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap(),
        response_headers,
        response_body: body_value(response["Body"].as_str()),
        auth_recorded: None,
    }
}

fn from_dotnet(entry: &Value) -> Interaction {
    let (origin, path, query) = split_url(entry["RequestUri"].as_str().unwrap());
    let auth = headers(&entry["RequestHeaders"], true).contains_key("authorization");
    Interaction {
        method: entry["RequestMethod"].as_str().unwrap().to_owned(),
        origin,
        path,
        query,
        request_body: match &entry["RequestBody"] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        },
        status: entry["StatusCode"].as_u64().unwrap() as u16,
        response_headers: headers(&entry["ResponseHeaders"], true),
        response_body: match &entry["ResponseBody"] {
            Value::Null => None,
            Value::String(s) => body_value(Some(s)),
            other => Some(other.clone()),
        },
        auth_recorded: Some(auth),
    }
}

fn from_vcr(interaction: &Value) -> Interaction {
    let request = &interaction["request"];
    let response = &interaction["response"];
    let (origin, path, query) = split_url(request["uri"].as_str().unwrap());
    Interaction {
        method: request["method"].as_str().unwrap().to_owned(),
        origin,
        path,
        query,
        request_body: request["body"].as_str().map(str::to_owned),
        status: response["status"]["code"].as_u64().unwrap() as u16,
        response_headers: headers(&response["headers"], true),
        response_body: body_value(response["body"]["string"].as_str()),
        auth_recorded: None,
    }
}
