//! `cairn-db`: the engine from the command line. A new user's first
//! contact (`demo`, `put`, `get`, `scan`) and the team's first performance
//! figure (`bench`, in the style of LevelDB's db_bench).
//!
//! Exit codes: 0 success, 1 the command failed (the engine's error is
//! printed), 2 the command line is wrong.

#[path = "cairn_db/args.rs"]
mod args;
#[path = "cairn_db/bench.rs"]
mod bench;
#[path = "cairn_db/commands.rs"]
mod commands;
#[path = "cairn_db/demo.rs"]
mod demo;
#[path = "cairn_db/histogram.rs"]
mod histogram;
#[path = "cairn_db/random.rs"]
mod random;
#[path = "cairn_db/text.rs"]
mod text;

use args::{Arg, CliError, Parser, usage};
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

const HELP: &str = "\
cairn-db: Cairn's storage engine from the command line

USAGE:
    cairn-db <command> [arguments]

COMMANDS:
    put <dir> <key> <value>   set a key (creates the database; synced before OK)
    get <dir> <key>           print the value, or (nil)
    delete <dir> <key>        delete a key
    scan <dir> [--prefix P] [--start S] [--end E] [--reverse] [--limit N]
                              print key<TAB>value lines in key order; --start is
                              inclusive, --end exclusive; bytes that are not
                              printable UTF-8 are escaped (\\xNN, \\t, \\n, \\\\)
    stats <dir>               tables per level, write amplification, memory
    compact <dir>             flush and compact everything to the last level
    demo [--dir D]            a ten-second tour in a fresh temp folder (or D)
    bench [options]           db_bench-style benchmarks (see below)
    help                      this text

BENCH OPTIONS:
    --dir D            work in D/cairn-bench (default: a temp folder, removed after)
    --num N            operations per benchmark and size of the key space (1_000_000)
    --key-bytes B      key length; keys are zero-padded numbers (16)
    --value-bytes B    value length; values compress to about half (100)
    --benchmarks LIST  comma-separated, run in order (fillseq,fillrandom,overwrite,
                       readrandom,readseq,readreverse,seekrandom,deleterandom);
                       also: compact. fillseq and fillrandom start from an empty
                       database; the others use what earlier ones left, so a
                       run of only reads against --dir reuses an earlier fill
    --threads T        threads; writers each fill their own key range (1)
    --sync             fsync the WAL on every write
    --read-mode M      mmap or pread for table files (mmap)
    --compression C    lz4 or none (lz4)
    --cache-mb M       block cache size in MiB (256)
    --seed S           random seed (301)
    --batch N          entries per write batch; ops count entries (1)
    --concurrent-insert-min N
                       group size (entries) from which writers insert into the
                       memtable concurrently (64; 0 always, huge never)

    Each benchmark prints micros/op and ops/s (wall time over all threads), MB/s,
    and p50/p99/p99.9 per-op latency; write benchmarks then wait (untimed) for
    background work and print write amplification and the level shape.

Arguments that start with -- can be given after a lone --.
Exit status: 0 ok, 1 the command failed, 2 usage error.

EXAMPLES:
    cairn-db demo
    cairn-db put /tmp/db hello world && cairn-db get /tmp/db hello
    cairn-db scan /tmp/db --prefix user: --limit 10
    cairn-db bench --num 1000 --benchmarks fillrandom,readrandom
";

/// Runs `command` with the rest of the arguments.
fn dispatch(command: &str, p: &mut Parser, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        "put" => commands::put(p, out),
        "get" => commands::get(p, out),
        "delete" => commands::delete(p, out),
        "scan" => commands::scan(p, out),
        "stats" => commands::stats(p, out),
        "compact" => commands::compact(p, out),
        "demo" => demo::run(p, out),
        "bench" => bench::run(p, out),
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

/// `--help` anywhere before a lone `--` asks for help rather than running.
fn wants_help(args: &[OsString]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h")
}

fn run(args: Vec<OsString>, out: &mut dyn Write) -> Result<(), CliError> {
    let mut p = Parser::new(args.clone());
    let command = match p.next_arg()? {
        None => return Err(usage("no command given")),
        Some(Arg::Flag(f)) if f == "--help" => return Ok(out.write_all(HELP.as_bytes())?),
        Some(Arg::Flag(f)) => return Err(usage(format!("unknown flag {f}"))),
        Some(Arg::Positional(c)) => c
            .into_string()
            .map_err(|c| usage(format!("unknown command {c:?}")))?,
    };
    if command == "help" || wants_help(&args) {
        return Ok(out.write_all(HELP.as_bytes())?);
    }
    dispatch(&command, &mut p, out)
}

fn main() -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = run(std::env::args_os().skip(1).collect(), &mut out);
    let _ = out.flush();
    let mut err = std::io::stderr();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(CliError::Usage(msg)) => {
            let _ = writeln!(err, "cairn-db: {msg}\nRun 'cairn-db --help' for usage.");
            ExitCode::from(2)
        }
        Err(e) => {
            let _ = writeln!(err, "cairn-db: {e}");
            ExitCode::FAILURE
        }
    }
}
