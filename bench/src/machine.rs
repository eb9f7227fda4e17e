//! What the report says about the machine it ran on: CPU, cores, memory, OS, toolchains, date.

use std::process::Command;

pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    pub rustc: String,
    pub wrk: String,
    pub date: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let os_release = read("/etc/os-release");
        Machine {
            cpu: field(&cpuinfo, "model name", ':').unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: field(&meminfo, "MemTotal", ':')
                .and_then(|v| v.trim_end_matches(" kB").trim().parse::<f64>().ok())
                .map_or(0.0, |kib| kib / 1024.0 / 1024.0),
            os: field(&os_release, "PRETTY_NAME", '=')
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_else(|| "unknown".into()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            rustc: first_line("rustc", &["--version"]),
            wrk: first_line("wrk", &["-v"]),
            date: time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute] UTC"
                ))
                .unwrap_or_default(),
        }
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The value of the first `name{separator}value` line.
fn field(text: &str, name: &str, separator: char) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(separator)?;
        (key.trim() == name).then(|| value.trim().to_owned())
    })
}

/// The first line a tool prints about itself (some print to stderr).
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("{program}: not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_key_value_files() {
        let text = "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nflags\t: a b\n";
        assert_eq!(
            field(text, "model name", ':').as_deref(),
            Some("Example CPU @ 2.0GHz")
        );
        assert_eq!(
            field("NAME=x\nPRETTY_NAME=\"Debian\"\n", "PRETTY_NAME", '=').as_deref(),
            Some("\"Debian\"")
        );
        assert_eq!(field(text, "missing", ':'), None);
    }
}
