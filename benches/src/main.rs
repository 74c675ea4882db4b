//! `cairn-bench`: the db_bench-style runner over Cairn and its peers.
//!
//! Each engine runs in its own child process (this binary again, with
//! `--child ENGINE`), one after the other, so that its peak RSS and write
//! counters are its own and no engine's caches or threads disturb the
//! next; the parent collects the rows and prints one table.
//!
//! Exit codes: 0 success, 1 a run failed, 2 the command line is wrong.

use cairn_benches::{
    Config, EngineRows, Error, Result, Workload, engine_names, from_line, run_engine, table,
    to_line,
};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

const HELP: &str = "\
cairn-bench: Cairn's engine side by side with RocksDB, fjall, sled and redb

USAGE:
    cairn-bench [options]

OPTIONS:
    --engines LIST      comma-separated (default: every engine in this build;
                        peers need `--features peers`)
    --workloads LIST    comma-separated, run in order (default: all):
                        fillseq,fillrandom,overwrite,readseq,readrandom,
                        seekrandom,readrandom-cold,readwhilewriting,
                        deleterandom,compact,sync1,sync16
    --num N             keys (and ops of the main workloads); K and M
                        suffixes (1M; 10M for the large run)
    --value-bytes B     value length (100; 1024 for 1 KiB values)
    --readers R         reader threads of readwhilewriting (2)
    --sync-writes N     puts of each sync workload (20000)
    --cache-mb M        block cache of every engine, MiB (256)
    --dir D             parent of the database folders (default: a temporary
                        folder in the current directory: keep it off tmpfs)
    --seed S            seed of the key streams (301)
    --smoke             tiny sizes, a few seconds: checks the runner works
    --in-process        run the engines in this process (peak RSS then
                        covers all engines run so far)
    --help              this text
";

struct Cli {
    cfg: Config,
    engines: Vec<String>,
    child: Option<String>,
    in_process: bool,
}

fn usage(m: impl Into<String>) -> Error {
    Error::Usage(m.into())
}

fn number(flag: &str, v: Option<String>) -> Result<u64> {
    let v = v.ok_or_else(|| usage(format!("{flag} needs a value")))?;
    let (digits, mult) = match v.strip_suffix(['M', 'm']) {
        Some(d) => (d, 1_000_000),
        None => match v.strip_suffix(['K', 'k']) {
            Some(d) => (d, 1_000),
            None => (v.as_str(), 1),
        },
    };
    digits
        .replace('_', "")
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| usage(format!("{flag}: {v:?} is not a number")))
}

fn to_usize(flag: &str, n: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| usage(format!("{flag}: {n} is too large")))
}

fn parse(args: &[String]) -> Result<Cli> {
    let mut cli = Cli {
        cfg: Config::default(),
        engines: engine_names().into_iter().map(String::from).collect(),
        child: None,
        in_process: false,
    };
    if args.iter().any(|a| a == "--smoke") {
        cli.cfg = Config::smoke();
    }
    let mut it = args.iter().cloned();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--engines" => {
                let v = it.next().ok_or_else(|| usage("--engines needs a value"))?;
                cli.engines = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
            }
            "--workloads" => {
                let v = it
                    .next()
                    .ok_or_else(|| usage("--workloads needs a value"))?;
                cli.cfg.workloads = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(Workload::parse)
                    .collect::<Result<_>>()?;
            }
            "--num" => cli.cfg.num = number(&flag, it.next())?,
            "--value-bytes" => cli.cfg.value_bytes = to_usize(&flag, number(&flag, it.next())?)?,
            "--readers" => cli.cfg.readers = to_usize(&flag, number(&flag, it.next())?)?,
            "--sync-writes" => cli.cfg.sync_writes = number(&flag, it.next())?,
            "--cache-mb" => {
                cli.cfg.settings.cache_bytes = to_usize(&flag, number(&flag, it.next())?)? << 20;
            }
            "--dir" => {
                cli.cfg.dir = Some(PathBuf::from(
                    it.next().ok_or_else(|| usage("--dir needs a value"))?,
                ));
            }
            "--seed" => cli.cfg.seed = number(&flag, it.next())?,
            "--smoke" => {}
            "--in-process" => cli.in_process = true,
            "--child" => cli.child = Some(it.next().ok_or_else(|| usage("--child needs a value"))?),
            other => return Err(usage(format!("unknown argument {other}"))),
        }
    }
    cli.cfg.validate()?;
    Ok(cli)
}

/// Runs `engine` in a child process with the same arguments; its stderr
/// (progress) passes through, its stdout carries the rows.
fn run_child(engine: &str, args: &[String]) -> Result<Vec<cairn_benches::Row>> {
    let child_err = |message: String| Error::Child {
        engine: engine.into(),
        message,
    };
    let exe = std::env::current_exe().map_err(|e| child_err(format!("find own binary: {e}")))?;
    let mut child = Command::new(exe)
        .args(args)
        .args(["--child", engine])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| child_err(format!("start: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| child_err("no stdout".into()))?;
    let mut rows = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| child_err(format!("read: {e}")))?;
        if let Some(row) = from_line(&line)? {
            rows.push(row);
        }
    }
    let status = child.wait().map_err(|e| child_err(format!("wait: {e}")))?;
    if !status.success() {
        return Err(child_err(format!("exited with {status}")));
    }
    Ok(rows)
}

fn run(args: &[String]) -> Result<()> {
    let cli = parse(args)?;
    let mut err = std::io::stderr();
    if let Some(engine) = &cli.child {
        let rows = run_engine(engine, &cli.cfg, &mut err)?;
        let mut out = std::io::stdout().lock();
        for r in &rows {
            writeln!(out, "{}", to_line(r)).map_err(|e| Error::Io {
                what: "write rows".into(),
                source: e,
            })?;
        }
        return Ok(());
    }
    let _ = writeln!(
        err,
        "cairn-bench: engines {}; {} keys, {}-byte values; workloads {}",
        cli.engines.join(","),
        cli.cfg.num,
        cli.cfg.value_bytes,
        cli.cfg
            .workloads
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut results: Vec<EngineRows> = Vec::new();
    for engine in &cli.engines {
        let rows = if cli.in_process {
            run_engine(engine, &cli.cfg, &mut err)?
        } else {
            run_child(engine, args)?
        };
        results.push((engine.clone(), rows));
    }
    print!("{}", table(&results));
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ Error::Usage(_)) => {
            eprintln!("cairn-bench: {e}\nRun 'cairn-bench --help' for usage.");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("cairn-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
