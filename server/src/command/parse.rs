//! From a request's arguments to a typed [`Command`]: names, arity and
//! options checked in Redis's order, with Redis's error texts.

use super::error::CommandError;
use super::number::{parse_f64, parse_i64};

type Bytes = Vec<u8>;

/// One parsed command. Numeric arguments are already checked (an expiry is
/// positive and fits in milliseconds, a SETRANGE offset is not negative), so
/// executing a command only fails on what the state holds, on overflow
/// against the current time, or on storage errors.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Get {
        key: Bytes,
    },
    Set {
        key: Bytes,
        value: Bytes,
        condition: SetCondition,
        ttl: SetTtl,
        get: bool,
    },
    SetNx {
        key: Bytes,
        value: Bytes,
    },
    /// `seconds > 0` and `seconds * 1000` fits in `i64`.
    SetEx {
        key: Bytes,
        seconds: i64,
        value: Bytes,
    },
    /// `ms > 0`.
    PSetEx {
        key: Bytes,
        ms: i64,
        value: Bytes,
    },
    GetSet {
        key: Bytes,
        value: Bytes,
    },
    GetDel {
        key: Bytes,
    },
    GetEx {
        key: Bytes,
        ttl: GetExTtl,
    },
    MGet {
        keys: Vec<Bytes>,
    },
    /// Pairs in request order; a repeated key takes its last value.
    MSet {
        pairs: Vec<(Bytes, Bytes)>,
    },
    MSetNx {
        pairs: Vec<(Bytes, Bytes)>,
    },
    Del {
        keys: Vec<Bytes>,
    },
    Unlink {
        keys: Vec<Bytes>,
    },
    Exists {
        keys: Vec<Bytes>,
    },
    Incr {
        key: Bytes,
    },
    IncrBy {
        key: Bytes,
        by: i64,
    },
    Decr {
        key: Bytes,
    },
    /// `by != i64::MIN`: its negation must fit.
    DecrBy {
        key: Bytes,
        by: i64,
    },
    /// `by` is finite or infinite, never NaN.
    IncrByFloat {
        key: Bytes,
        by: f64,
    },
    Append {
        key: Bytes,
        value: Bytes,
    },
    StrLen {
        key: Bytes,
    },
    GetRange {
        key: Bytes,
        start: i64,
        end: i64,
    },
    /// `offset >= 0`.
    SetRange {
        key: Bytes,
        offset: i64,
        value: Bytes,
    },
    /// `seconds * 1000` fits in `i64`.
    Expire {
        key: Bytes,
        seconds: i64,
        condition: ExpireCondition,
    },
    PExpire {
        key: Bytes,
        ms: i64,
        condition: ExpireCondition,
    },
    /// `unix_s * 1000` fits in `i64`.
    ExpireAt {
        key: Bytes,
        unix_s: i64,
        condition: ExpireCondition,
    },
    PExpireAt {
        key: Bytes,
        unix_ms: i64,
        condition: ExpireCondition,
    },
    Ttl {
        key: Bytes,
    },
    PTtl {
        key: Bytes,
    },
    Persist {
        key: Bytes,
    },
    Type {
        key: Bytes,
    },
    Ping {
        message: Option<Bytes>,
    },
    Echo {
        message: Bytes,
    },
}

/// When SET writes: always, NX (only if the key is missing) or XX (only if
/// it exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetCondition {
    #[default]
    Always,
    IfMissing,
    IfExists,
}

/// What SET does to the key's time to live: clear it (the default), keep
/// it (KEEPTTL), or set a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetTtl {
    #[default]
    Clear,
    Keep,
    Expire(Expiry),
}

/// What GETEX does to the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GetExTtl {
    /// No option: GETEX is a GET.
    #[default]
    Keep,
    Persist,
    Expire(Expiry),
}

/// An expiry as the client wrote it. Always positive; seconds fit in `i64`
/// once multiplied by 1000. [`Command::stamp`] turns `Ex` and `Px` into
/// `PxAt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Seconds from now.
    Ex(i64),
    /// Milliseconds from now.
    Px(i64),
    /// Unix time in seconds.
    ExAt(i64),
    /// Unix time in milliseconds.
    PxAt(i64),
}

/// EXPIRE's options (Redis 7). Parsing allows XX with GT or LT, and no
/// other pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireCondition {
    /// Only if the key has no expiry.
    pub nx: bool,
    /// Only if the key has an expiry.
    pub xx: bool,
    /// Only if the new expiry is later than the current one (none counts as
    /// infinitely late).
    pub gt: bool,
    /// Only if the new expiry is earlier than the current one (none counts
    /// as infinitely late).
    pub lt: bool,
}

/// Every command with its canonical name and Redis's arity: `n` exactly
/// `n` arguments counting the name, `-n` at least `n`.
const COMMANDS: &[(&str, i32)] = &[
    ("get", 2),
    ("set", -3),
    ("setnx", 3),
    ("setex", 4),
    ("psetex", 4),
    ("getset", 3),
    ("getdel", 2),
    ("getex", -2),
    ("mget", -2),
    ("mset", -3),
    ("msetnx", -3),
    ("del", -2),
    ("unlink", -2),
    ("exists", -2),
    ("incr", 2),
    ("incrby", 3),
    ("decr", 2),
    ("decrby", 3),
    ("incrbyfloat", 3),
    ("append", 3),
    ("strlen", 2),
    ("getrange", 4),
    ("setrange", 4),
    ("expire", -3),
    ("pexpire", -3),
    ("expireat", -3),
    ("pexpireat", -3),
    ("ttl", 2),
    ("pttl", 2),
    ("persist", 2),
    ("type", 2),
    ("ping", -1),
    ("echo", 2),
];

/// The arguments after the command name. Arity is checked before anything
/// is taken, so `next` always finds one; it yields an empty argument rather
/// than panic if that were ever wrong.
struct Rest(std::vec::IntoIter<Bytes>);

impl Rest {
    fn next(&mut self) -> Bytes {
        self.0.next().unwrap_or_default()
    }

    fn all(self) -> Vec<Bytes> {
        self.0.collect()
    }
}

impl Command {
    /// Parses a request (name first, as the codec returns it). The name is
    /// case-insensitive. Checks run in Redis's order: known name, arity,
    /// then options (syntax) before numbers.
    pub fn parse(args: Vec<Bytes>) -> Result<Command, CommandError> {
        let mut args = args.into_iter();
        let Some(name) = args.next() else {
            return Err(CommandError::Empty);
        };
        let lower = name.to_ascii_lowercase();
        let Some(&(command, arity)) = COMMANDS.iter().find(|(n, _)| n.as_bytes() == lower) else {
            return Err(CommandError::Unknown {
                name,
                args: args.collect(),
            });
        };
        let argc = args.len() + 1;
        let arity_ok = match usize::try_from(arity) {
            Ok(exact) => argc == exact,
            Err(_) => argc >= usize::try_from(arity.unsigned_abs()).unwrap_or(usize::MAX),
        };
        if !arity_ok {
            return Err(CommandError::WrongArity { command });
        }
        build(command, Rest(args))
    }
}

fn build(command: &'static str, mut a: Rest) -> Result<Command, CommandError> {
    Ok(match command {
        "get" => Command::Get { key: a.next() },
        "set" => parse_set(a)?,
        "setnx" => Command::SetNx {
            key: a.next(),
            value: a.next(),
        },
        "setex" | "psetex" => {
            let key = a.next();
            let seconds = command == "setex";
            let time = expiry_value(&a.next(), seconds, command)?;
            let value = a.next();
            if seconds {
                Command::SetEx {
                    key,
                    seconds: time,
                    value,
                }
            } else {
                Command::PSetEx {
                    key,
                    ms: time,
                    value,
                }
            }
        }
        "getset" => Command::GetSet {
            key: a.next(),
            value: a.next(),
        },
        "getdel" => Command::GetDel { key: a.next() },
        "getex" => parse_getex(a)?,
        "mget" => Command::MGet { keys: a.all() },
        "mset" => Command::MSet {
            pairs: pairs(a.all(), command)?,
        },
        "msetnx" => Command::MSetNx {
            pairs: pairs(a.all(), command)?,
        },
        "del" => Command::Del { keys: a.all() },
        "unlink" => Command::Unlink { keys: a.all() },
        "exists" => Command::Exists { keys: a.all() },
        "incr" => Command::Incr { key: a.next() },
        "decr" => Command::Decr { key: a.next() },
        "incrby" => Command::IncrBy {
            key: a.next(),
            by: integer(&a.next())?,
        },
        "decrby" => {
            let key = a.next();
            let by = integer(&a.next())?;
            if by == i64::MIN {
                return Err(CommandError::DecrementOverflow);
            }
            Command::DecrBy { key, by }
        }
        "incrbyfloat" => {
            let key = a.next();
            let by = parse_f64(&a.next()).ok_or(CommandError::NotAFloat)?;
            Command::IncrByFloat { key, by }
        }
        "append" => Command::Append {
            key: a.next(),
            value: a.next(),
        },
        "strlen" => Command::StrLen { key: a.next() },
        "getrange" => {
            let key = a.next();
            let start = integer(&a.next())?;
            let end = integer(&a.next())?;
            Command::GetRange { key, start, end }
        }
        "setrange" => {
            let key = a.next();
            let offset = integer(&a.next())?;
            if offset < 0 {
                return Err(CommandError::OffsetOutOfRange);
            }
            Command::SetRange {
                key,
                offset,
                value: a.next(),
            }
        }
        "expire" | "pexpire" | "expireat" | "pexpireat" => parse_expire(command, a)?,
        "ttl" => Command::Ttl { key: a.next() },
        "pttl" => Command::PTtl { key: a.next() },
        "persist" => Command::Persist { key: a.next() },
        "type" => Command::Type { key: a.next() },
        "ping" => {
            let mut rest = a.all();
            if rest.len() > 1 {
                return Err(CommandError::WrongArity { command });
            }
            Command::Ping {
                message: rest.pop(),
            }
        }
        "echo" => Command::Echo { message: a.next() },
        _ => {
            return Err(CommandError::Unknown {
                name: command.as_bytes().to_vec(),
                args: a.all(),
            });
        }
    })
}

fn integer(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotAnInteger)
}

/// An expiry argument as Redis's `getExpireMillisecondsOrReply` checks it:
/// an integer, positive, and for seconds small enough to become
/// milliseconds.
fn expiry_value(arg: &[u8], seconds: bool, command: &'static str) -> Result<i64, CommandError> {
    let value = integer(arg)?;
    if value <= 0 || (seconds && value > i64::MAX / 1000) {
        return Err(CommandError::InvalidExpireTime { command });
    }
    Ok(value)
}

fn pairs(args: Vec<Bytes>, command: &'static str) -> Result<Vec<(Bytes, Bytes)>, CommandError> {
    if !args.len().is_multiple_of(2) {
        return Err(CommandError::WrongArity { command });
    }
    let mut out = Vec::with_capacity(args.len() / 2);
    let mut args = args.into_iter();
    while let (Some(key), Some(value)) = (args.next(), args.next()) {
        out.push((key, value));
    }
    Ok(out)
}

/// The options SET and GETEX share, as Redis's
/// `parseExtendedStringArgumentsOrReply` reads them.
#[derive(Default)]
struct StringOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    /// The option's kind (`ex`, `px`, `exat`, `pxat`) and its argument.
    expiry: Option<(Bytes, Bytes)>,
}

/// Reads SET's (`for_set`) or GETEX's options. An option is refused, as a
/// syntax error, if the command does not take it or it conflicts with one
/// already seen; repeating NX, XX, GET, KEEPTTL or PERSIST is allowed, a
/// second expiry is not. The expiry's number is checked only after every
/// option has been read, as Redis does.
fn string_options(
    args: Vec<Bytes>,
    for_set: bool,
    command: &'static str,
) -> Result<(StringOptions, Option<Expiry>), CommandError> {
    let mut o = StringOptions::default();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let opt = arg.to_ascii_lowercase();
        let has_next = args.peek().is_some();
        let no_expiry = o.expiry.is_none();
        match opt.as_slice() {
            b"nx" if for_set && !o.xx => o.nx = true,
            b"xx" if for_set && !o.nx => o.xx = true,
            b"get" if for_set => o.get = true,
            b"keepttl" if for_set && !o.persist && no_expiry => o.keep_ttl = true,
            b"persist" if !for_set && !o.keep_ttl && no_expiry => o.persist = true,
            b"ex" | b"px" | b"exat" | b"pxat"
                if !o.keep_ttl && !o.persist && no_expiry && has_next =>
            {
                o.expiry = Some((opt, args.next().unwrap_or_default()));
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    let expiry = match &o.expiry {
        None => None,
        Some((kind, arg)) => {
            let seconds = matches!(kind.as_slice(), b"ex" | b"exat");
            let time = expiry_value(arg, seconds, command)?;
            Some(match kind.as_slice() {
                b"ex" => Expiry::Ex(time),
                b"px" => Expiry::Px(time),
                b"exat" => Expiry::ExAt(time),
                _ => Expiry::PxAt(time),
            })
        }
    };
    Ok((o, expiry))
}

fn parse_set(mut a: Rest) -> Result<Command, CommandError> {
    let key = a.next();
    let value = a.next();
    let (o, expiry) = string_options(a.all(), true, "set")?;
    let condition = match (o.nx, o.xx) {
        (true, _) => SetCondition::IfMissing,
        (_, true) => SetCondition::IfExists,
        _ => SetCondition::Always,
    };
    let ttl = match (expiry, o.keep_ttl) {
        (Some(e), _) => SetTtl::Expire(e),
        (None, true) => SetTtl::Keep,
        (None, false) => SetTtl::Clear,
    };
    Ok(Command::Set {
        key,
        value,
        condition,
        ttl,
        get: o.get,
    })
}

fn parse_getex(mut a: Rest) -> Result<Command, CommandError> {
    let key = a.next();
    let (o, expiry) = string_options(a.all(), false, "getex")?;
    let ttl = match (expiry, o.persist) {
        (Some(e), _) => GetExTtl::Expire(e),
        (None, true) => GetExTtl::Persist,
        (None, false) => GetExTtl::Keep,
    };
    Ok(Command::GetEx { key, ttl })
}

/// EXPIRE and its kin, as Redis 7's `expireGenericCommand`: options first
/// (unknown ones and bad pairs are errors), then the time. Seconds must fit
/// once multiplied by 1000; a zero, negative or past time is allowed (it
/// deletes the key).
fn parse_expire(command: &'static str, mut a: Rest) -> Result<Command, CommandError> {
    let key = a.next();
    let time = a.next();
    let mut c = ExpireCondition::default();
    for arg in a.all() {
        match arg.to_ascii_lowercase().as_slice() {
            b"nx" => c.nx = true,
            b"xx" => c.xx = true,
            b"gt" => c.gt = true,
            b"lt" => c.lt = true,
            _ => return Err(CommandError::UnsupportedOption { option: arg }),
        }
    }
    if c.nx && (c.xx || c.gt || c.lt) {
        return Err(CommandError::NxWithXxGtLt);
    }
    if c.gt && c.lt {
        return Err(CommandError::GtWithLt);
    }
    let time = integer(&time)?;
    let seconds = matches!(command, "expire" | "expireat");
    if seconds && time.checked_mul(1000).is_none() {
        return Err(CommandError::InvalidExpireTime { command });
    }
    Ok(match command {
        "expire" => Command::Expire {
            key,
            seconds: time,
            condition: c,
        },
        "pexpire" => Command::PExpire {
            key,
            ms: time,
            condition: c,
        },
        "expireat" => Command::ExpireAt {
            key,
            unix_s: time,
            condition: c,
        },
        _ => Command::PExpireAt {
            key,
            unix_ms: time,
            condition: c,
        },
    })
}

impl Command {
    /// The keys the command touches, in argument order (repeats kept), for
    /// slot routing and CROSSSLOT checks. Empty for PING and ECHO.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Self::MGet { keys }
            | Self::Del { keys }
            | Self::Unlink { keys }
            | Self::Exists { keys } => keys.iter().map(Vec::as_slice).collect(),
            Self::MSet { pairs } | Self::MSetNx { pairs } => {
                pairs.iter().map(|(k, _)| k.as_slice()).collect()
            }
            Self::Ping { .. } | Self::Echo { .. } => Vec::new(),
            Self::Get { key }
            | Self::Set { key, .. }
            | Self::SetNx { key, .. }
            | Self::SetEx { key, .. }
            | Self::PSetEx { key, .. }
            | Self::GetSet { key, .. }
            | Self::GetDel { key }
            | Self::GetEx { key, .. }
            | Self::Incr { key }
            | Self::IncrBy { key, .. }
            | Self::Decr { key }
            | Self::DecrBy { key, .. }
            | Self::IncrByFloat { key, .. }
            | Self::Append { key, .. }
            | Self::StrLen { key }
            | Self::GetRange { key, .. }
            | Self::SetRange { key, .. }
            | Self::Expire { key, .. }
            | Self::PExpire { key, .. }
            | Self::ExpireAt { key, .. }
            | Self::PExpireAt { key, .. }
            | Self::Ttl { key }
            | Self::PTtl { key }
            | Self::Persist { key }
            | Self::Type { key } => vec![key.as_slice()],
        }
    }

    /// Whether the command may change state (Redis's `write` flag): it must
    /// go through the leader and the Raft log. GETEX counts even without
    /// options, as in Redis. A read never yields mutations.
    pub fn is_write(&self) -> bool {
        match self {
            Self::Get { .. }
            | Self::MGet { .. }
            | Self::Exists { .. }
            | Self::StrLen { .. }
            | Self::GetRange { .. }
            | Self::Ttl { .. }
            | Self::PTtl { .. }
            | Self::Type { .. }
            | Self::Ping { .. }
            | Self::Echo { .. } => false,
            Self::Set { .. }
            | Self::SetNx { .. }
            | Self::SetEx { .. }
            | Self::PSetEx { .. }
            | Self::GetSet { .. }
            | Self::GetDel { .. }
            | Self::GetEx { .. }
            | Self::MSet { .. }
            | Self::MSetNx { .. }
            | Self::Del { .. }
            | Self::Unlink { .. }
            | Self::Incr { .. }
            | Self::IncrBy { .. }
            | Self::Decr { .. }
            | Self::DecrBy { .. }
            | Self::IncrByFloat { .. }
            | Self::Append { .. }
            | Self::SetRange { .. }
            | Self::Expire { .. }
            | Self::PExpire { .. }
            | Self::ExpireAt { .. }
            | Self::PExpireAt { .. }
            | Self::Persist { .. } => true,
        }
    }
}
