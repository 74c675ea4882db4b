//! `cairn-chaos`: one seeded fault-injection run against real `cairn`
//! processes. Prints one summary line; exits 1 on an anomaly.
//!
//! ```text
//! cargo build -p cairn-server && cargo run -p cairn-chaos -- --minutes 10 --seed 7 --nodes 3
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cairn_chaos::RunConfig;
use cairn_chaos::fault::Class;

const USAGE: &str = "usage: cairn-chaos [--seed N] [--minutes M | --seconds S] [--nodes 3|5]
    [--faults kill,pause,partition,transfer,membership] [--clients N] [--follower-clients N]
    [--fsync always|never] [--op-timeout-ms N] [--dir PATH] [--keep] [--cairn-bin PATH]
    [--self-test follower-reads-linearizable]";

fn main() -> ExitCode {
    match parse(std::env::args().skip(1).collect()) {
        Ok(Some((config, keep))) => run(&config, keep),
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cairn-chaos: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(config: &RunConfig, keep: bool) -> ExitCode {
    match cairn_chaos::run(config) {
        Ok(report) => {
            println!("{}", report.summary());
            for a in &report.findings.anomalies {
                println!("anomaly {}: {} ({})", a.kind, a.summary, a.key);
            }
            for f in &report.anomaly_files {
                println!("history written to {}", f.display());
            }
            for p in &report.problems {
                println!("problem: {p}");
            }
            if !report.findings.unknown.is_empty() {
                println!("unchecked keys: {}", report.findings.unknown.join(" "));
            }
            let clean = report.findings.anomalies.is_empty() && report.problems.is_empty();
            if clean && !keep {
                let _ = std::fs::remove_dir_all(&config.dir);
            } else {
                println!("data and node logs kept in {}", config.dir.display());
            }
            if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("cairn-chaos: {e} (data in {})", config.dir.display());
            ExitCode::FAILURE
        }
    }
}

/// The `cairn` binary next to this one (both in target/<profile>/).
fn sibling_cairn() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let bin = exe.with_file_name(format!("cairn{}", std::env::consts::EXE_SUFFIX));
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "no cairn binary at {} (cargo build -p cairn-server, or pass --cairn-bin)",
            bin.display()
        ))
    }
}

fn parse(args: Vec<String>) -> Result<Option<(RunConfig, bool)>, String> {
    let mut it = args.into_iter();
    let mut seed = 1u64;
    let mut bin = None;
    let mut dir = None;
    let mut keep = false;
    let mut settings: Vec<(String, String)> = Vec::new();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--keep" => keep = true,
            _ => {
                let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
                match arg.as_str() {
                    "--seed" => seed = number(&arg, &value)?,
                    "--cairn-bin" => bin = Some(PathBuf::from(value)),
                    "--dir" => dir = Some(PathBuf::from(value)),
                    _ => settings.push((arg, value)),
                }
            }
        }
    }
    let bin = match bin {
        Some(b) => b,
        None => sibling_cairn()?,
    };
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cairn-chaos-{seed}-{}", std::process::id()))
    });
    let mut config = RunConfig::new(bin, dir, seed);
    for (arg, value) in settings {
        match arg.as_str() {
            "--minutes" => config.duration = Duration::from_secs(60 * number::<u64>(&arg, &value)?),
            "--seconds" => config.duration = Duration::from_secs(number(&arg, &value)?),
            "--nodes" => {
                config.nodes = number(&arg, &value)?;
                if !(3..=9).contains(&config.nodes) {
                    return Err("--nodes must be 3 to 9".into());
                }
            }
            "--faults" => {
                config.classes = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(Class::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--clients" => config.clients = number(&arg, &value)?,
            "--follower-clients" => config.follower_clients = number(&arg, &value)?,
            "--op-timeout-ms" => {
                config.op_timeout = Duration::from_millis(number(&arg, &value)?);
            }
            "--fsync" if value == "always" || value == "never" => config.fsync = value,
            "--self-test" if value == "follower-reads-linearizable" => {
                config.limits.follower_reads_linearizable = true;
            }
            _ => return Err(format!("unknown option {arg} {value}")),
        }
    }
    Ok(Some((config, keep)))
}

fn number<T: std::str::FromStr>(arg: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{arg}: {value:?} is not a number"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn faults_option_selects_classes_including_membership() {
        // `--faults` takes any subset of the classes, membership included;
        // an unknown class is an error naming the valid ones.
        let (config, _) = parse(args(
            "--cairn-bin /bin/true --faults kill,pause,partition,transfer,membership --nodes 5",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            config.classes,
            vec![
                Class::Kill,
                Class::Pause,
                Class::Partition,
                Class::Transfer,
                Class::Membership
            ]
        );
        assert_eq!(config.nodes, 5);
        let (config, _) = parse(args("--cairn-bin /bin/true --faults membership"))
            .unwrap()
            .unwrap();
        assert_eq!(config.classes, vec![Class::Membership]);
        let bad = parse(args("--cairn-bin /bin/true --faults kill,wipe")).unwrap_err();
        assert!(bad.contains("membership"), "{bad}");
    }
}
