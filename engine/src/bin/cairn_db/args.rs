//! Hand-rolled argument parsing (the engine takes no CLI dependency) and
//! the tool's one error type.
//!
//! Grammar: positionals and `--flag`, `--flag value` or `--flag=value` in
//! any order; `--` ends flags, so a key that starts with `--` can still be
//! given. Arguments are `OsString`s because keys and values need not be
//! UTF-8; only flag names and numbers must be.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io;

/// Everything that stops a command. `Usage` exits with 2, the rest with 1.
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong; the message says how.
    Usage(String),
    /// The engine refused or failed.
    Engine(cairn_engine::Error),
    /// Writing output or touching the file system outside the engine failed.
    Io { what: String, source: io::Error },
}

impl CliError {
    pub fn io(what: impl Into<String>, source: io::Error) -> CliError {
        CliError::Io {
            what: what.into(),
            source,
        }
    }

    /// True when stdout was closed under us (`cairn-db scan db | head`):
    /// not a failure of the command.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(msg) => f.write_str(msg),
            CliError::Engine(e) => write!(f, "{e}"),
            CliError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl From<cairn_engine::Error> for CliError {
    fn from(e: cairn_engine::Error) -> Self {
        CliError::Engine(e)
    }
}

/// Output errors: the only `io::Error`s that reach `?` without context.
impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::io("writing output", e)
    }
}

pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// One parsed argument.
#[derive(Debug)]
pub enum Arg {
    /// `--name` (the `=value` part, if any, waits for [`Parser::value`]).
    Flag(String),
    Positional(OsString),
}

/// Walks the arguments of one subcommand.
#[derive(Debug)]
pub struct Parser {
    args: VecDeque<OsString>,
    /// The value of a `--flag=value` not yet taken, with its flag.
    inline_value: Option<(String, OsString)>,
    /// Set by `--`: everything after it is positional.
    only_positional: bool,
}

impl Parser {
    pub fn new(args: impl IntoIterator<Item = OsString>) -> Parser {
        Parser {
            args: args.into_iter().collect(),
            inline_value: None,
            only_positional: false,
        }
    }

    pub fn next_arg(&mut self) -> Result<Option<Arg>, CliError> {
        if let Some((flag, _)) = self.inline_value.take() {
            return Err(usage(format!("{flag} takes no value")));
        }
        let Some(arg) = self.args.pop_front() else {
            return Ok(None);
        };
        if self.only_positional {
            return Ok(Some(Arg::Positional(arg)));
        }
        let Some(text) = arg.to_str() else {
            return Ok(Some(Arg::Positional(arg)));
        };
        match text {
            "--" => {
                self.only_positional = true;
                self.next_arg()
            }
            "-h" | "--help" => Ok(Some(Arg::Flag("--help".to_string()))),
            flag if flag.starts_with("--") => match flag.split_once('=') {
                Some((name, value)) => {
                    self.inline_value = Some((name.to_string(), value.into()));
                    Ok(Some(Arg::Flag(name.to_string())))
                }
                None => Ok(Some(Arg::Flag(flag.to_string()))),
            },
            _ => Ok(Some(Arg::Positional(arg))),
        }
    }

    /// The value of `flag`: after `=` or the next argument.
    pub fn value(&mut self, flag: &str) -> Result<OsString, CliError> {
        if let Some((_, v)) = self.inline_value.take() {
            return Ok(v);
        }
        self.args
            .pop_front()
            .ok_or_else(|| usage(format!("{flag} needs a value")))
    }

    pub fn text_value(&mut self, flag: &str) -> Result<String, CliError> {
        self.value(flag)?
            .into_string()
            .map_err(|v| usage(format!("{flag}: {v:?} is not UTF-8")))
    }

    /// A whole number; `_` may group digits (`1_000_000`).
    pub fn number_value(&mut self, flag: &str) -> Result<u64, CliError> {
        let text = self.text_value(flag)?;
        text.replace('_', "")
            .parse()
            .map_err(|_| usage(format!("{flag}: expected a whole number, got {text:?}")))
    }
}

/// Checks that exactly `names.len()` positionals were given.
pub fn expect_positionals(got: Vec<OsString>, names: &[&str]) -> Result<Vec<OsString>, CliError> {
    if got.len() == names.len() {
        return Ok(got);
    }
    let wanted = names
        .iter()
        .map(|n| format!("<{n}>"))
        .collect::<Vec<_>>()
        .join(" ");
    match got.get(names.len()) {
        Some(extra) => Err(usage(format!(
            "unexpected argument {extra:?} (expected {wanted})"
        ))),
        None => Err(usage(format!(
            "missing <{}> (expected {wanted})",
            names.get(got.len()).copied().unwrap_or("argument")
        ))),
    }
}
