//! A Functions app as the host sees it: `host.json` plus one folder per function holding its
//! `function.json` (folder name = function name). Also packages this repository into that layout,
//! as `scripts/package-function-app` does, so tests run the same files that get deployed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The parts of `host.json` the host acts on.
#[derive(Debug, Clone)]
pub struct HostJson {
    pub executable: String,
    pub working_directory: String,
    pub arguments: Vec<String>,
    pub forwarding: bool,
    pub route_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLevel {
    Anonymous,
    Function,
    Admin,
}

#[derive(Debug, Clone)]
pub enum Trigger {
    Http {
        route: String,
        /// Upper-case methods; empty means every method.
        methods: Vec<String>,
        auth_level: AuthLevel,
        /// One `httpTrigger` in and exactly one `http` out: forwarded when forwarding is on.
        http_in_and_out: bool,
    },
    Timer {
        binding: String,
        /// As written, possibly `%AppSetting%`.
        schedule: String,
    },
}

#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub trigger: Trigger,
}

#[derive(Debug, Clone)]
pub struct FunctionApp {
    pub root: PathBuf,
    pub host: HostJson,
    pub functions: Vec<Function>,
}

impl FunctionApp {
    /// Reads an app folder laid out as the host expects it.
    pub fn load(root: &Path) -> Result<FunctionApp, String> {
        let host_text = std::fs::read_to_string(root.join("host.json"))
            .map_err(|e| format!("cannot read host.json: {e}"))?;
        let host: Value =
            serde_json::from_str(&host_text).map_err(|e| format!("host.json: {e}"))?;
        if host["version"] != "2.0" {
            return Err("host.json: \"version\": \"2.0\" is required".into());
        }
        let description = &host["customHandler"]["description"];
        if description.is_null() {
            return Err("host.json: Missing worker Description.".into());
        }
        let executable = description["defaultExecutablePath"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or("host.json: WorkerDescription DefaultExecutablePath cannot be empty")?
            .to_owned();
        let host = HostJson {
            executable,
            working_directory: description["workingDirectory"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            arguments: description["arguments"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            forwarding: host["customHandler"]["enableForwardingHttpRequest"]
                .as_bool()
                .unwrap_or(false),
            route_prefix: host["extensions"]["http"]["routePrefix"]
                .as_str()
                .unwrap_or("api")
                .to_owned(),
        };
        let mut functions = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(root)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("function.json").is_file())
            .collect();
        entries.sort();
        for dir in entries {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(dir.join("function.json")).unwrap();
            let json: Value =
                serde_json::from_str(&text).map_err(|e| format!("{name}/function.json: {e}"))?;
            functions.push(Function {
                trigger: parse_trigger(&name, &json)?,
                name,
            });
        }
        Ok(FunctionApp {
            root: root.to_owned(),
            host,
            functions,
        })
    }

    /// Packages this repository (host.json, function-definitions/, the test build of the binary)
    /// into a fresh app folder under `dir`.
    pub fn package_repository(dir: &Path) -> FunctionApp {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(repo.join("host.json"), dir.join("host.json")).unwrap();
        for entry in std::fs::read_dir(repo.join("function-definitions")).unwrap() {
            let from = entry.unwrap().path();
            let to = dir.join(from.file_name().unwrap());
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(from.join("function.json"), to.join("function.json")).unwrap();
        }
        let app = FunctionApp::load(dir).expect("the repository's app definition loads");
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_computebridge"),
            dir.join(&app.host.executable),
        )
        .unwrap();
        app
    }

    pub fn timer(&self, name: &str) -> Option<(&str, &str)> {
        self.functions.iter().find_map(|f| match &f.trigger {
            Trigger::Timer { binding, schedule } if f.name == name => {
                Some((binding.as_str(), schedule.as_str()))
            }
            _ => None,
        })
    }

    /// The HTTP function whose route and methods match, with its route values.
    pub fn match_route(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(&Function, BTreeMap<String, String>)> {
        let prefix = self.host.route_prefix.trim_matches('/');
        let rest = path.trim_start_matches('/');
        let rest = if prefix.is_empty() {
            rest
        } else {
            let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
            if !first.eq_ignore_ascii_case(prefix) {
                return None;
            }
            tail
        };
        self.functions
            .iter()
            .find_map(|function| match &function.trigger {
                Trigger::Http { route, methods, .. } => {
                    let method_ok = methods.is_empty()
                        || methods.iter().any(|m| m.eq_ignore_ascii_case(method));
                    let values = match_template(route, rest)?;
                    method_ok.then_some((function, values))
                }
                Trigger::Timer { .. } => None,
            })
    }
}

fn parse_trigger(name: &str, json: &Value) -> Result<Trigger, String> {
    let bindings = json["bindings"]
        .as_array()
        .ok_or(format!("{name}/function.json has no bindings array"))?;
    let inputs: Vec<&Value> = bindings.iter().filter(|b| b["direction"] == "in").collect();
    let outputs: Vec<&Value> = bindings
        .iter()
        .filter(|b| b["direction"] == "out")
        .collect();
    let trigger = inputs
        .iter()
        .find(|b| b["type"].as_str().is_some_and(|t| t.ends_with("Trigger")))
        .ok_or(format!("{name}/function.json has no trigger binding"))?;
    match trigger["type"].as_str().unwrap() {
        "httpTrigger" => {
            let auth_level = match trigger["authLevel"].as_str().unwrap_or("function") {
                "anonymous" => AuthLevel::Anonymous,
                "function" => AuthLevel::Function,
                "admin" => AuthLevel::Admin,
                other => return Err(format!("{name}: unknown authLevel '{other}'")),
            };
            Ok(Trigger::Http {
                route: trigger["route"].as_str().unwrap_or(name).to_owned(),
                methods: trigger["methods"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter_map(|v| v.as_str())
                            .map(str::to_uppercase)
                            .collect()
                    })
                    .unwrap_or_default(),
                auth_level,
                http_in_and_out: inputs.len() == 1
                    && outputs.len() == 1
                    && outputs[0]["type"] == "http",
            })
        }
        "timerTrigger" => Ok(Trigger::Timer {
            binding: trigger["name"].as_str().unwrap_or("timer").to_owned(),
            schedule: trigger["schedule"]
                .as_str()
                .ok_or(format!("{name}: timerTrigger without schedule"))?
                .to_owned(),
        }),
        other => Err(format!(
            "{name}: trigger type '{other}' is not supported by this harness"
        )),
    }
}

/// ASP.NET-style route template match: literal segments (case-insensitive), `{name}`,
/// `{name:constraint}` (int, alpha), optional `{name?}` and catch-all `{*name}`.
pub fn match_template(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let template: Vec<&str> = template
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let path: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut values = BTreeMap::new();
    for (i, segment) in template.iter().enumerate() {
        let parameter = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
        let Some(parameter) = parameter else {
            if !path.get(i)?.eq_ignore_ascii_case(segment) {
                return None;
            }
            continue;
        };
        if let Some(name) = parameter.strip_prefix('*') {
            values.insert(name.to_owned(), path[i.min(path.len())..].join("/"));
            return Some(values);
        }
        let (name, constraint) = parameter.split_once(':').unwrap_or((parameter, ""));
        let (name, optional) = match name.strip_suffix('?') {
            Some(n) => (n, true),
            None => (name, constraint.ends_with('?')),
        };
        let constraint = constraint.trim_end_matches('?');
        match path.get(i) {
            None if optional => continue,
            None => return None,
            Some(value) => {
                let ok = match constraint {
                    "int" => value.parse::<i64>().is_ok(),
                    "alpha" => value.chars().all(|c| c.is_ascii_alphabetic()),
                    _ => true,
                };
                if !ok {
                    return None;
                }
                values.insert(name.to_owned(), percent_decode(value));
            }
        }
    }
    (path.len() <= template.len()).then_some(values)
}

fn percent_decode(text: &str) -> String {
    url_decode(text.as_bytes())
}

pub fn url_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            ) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_like_aspnet_routing() {
        type Values = &'static [(&'static str, &'static str)];
        let cases: &[(&str, &str, Option<Values>)] = &[
            ("health", "health", Some(&[])),
            ("health", "HEALTH", Some(&[])),
            ("health", "health/x", None),
            ("pools/{pool}", "pools/demo", Some(&[("pool", "demo")])),
            (
                "pools/{pool}/resize",
                "pools/demo/resize",
                Some(&[("pool", "demo")]),
            ),
            ("pools/{pool}/resize", "pools/demo", None),
            ("items/{id:int}", "items/42", Some(&[("id", "42")])),
            ("items/{id:int}", "items/x", None),
            ("runs/{id?}", "runs", Some(&[])),
            ("files/{*rest}", "files/a/b", Some(&[("rest", "a/b")])),
            ("runs/{id}", "runs/a%20b", Some(&[("id", "a b")])),
        ];
        for (template, path, expected) in cases {
            let expected = expected.map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>()
            });
            assert_eq!(
                match_template(template, path),
                expected,
                "{template} vs {path}"
            );
        }
    }
}
