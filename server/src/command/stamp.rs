//! Turning relative expiries into absolute ones, so a command means the
//! same thing whenever and wherever it is applied.

use super::parse::{Command, Expiry, GetExTtl, SetCondition, SetTtl};

impl Command {
    /// Rewrites every expiry relative to "now" into its absolute form, using
    /// `now_ms` (Unix milliseconds) as now: SET and GETEX `EX`/`PX` become
    /// `PXAT`, SETEX and PSETEX become `SET ... PXAT`, EXPIRE and PEXPIRE
    /// become PEXPIREAT. Everything else is returned unchanged.
    ///
    /// The leader stamps a command once, with its clock, before proposing
    /// it; every replica then applies the stamped command. That fixes the
    /// expiry written, but not the command's other reads of time (is the
    /// key already expired? what does TTL say?): the apply loop must pass
    /// [`execute`](super::execute) the same `now_ms` the leader stamped
    /// with, carried in the log entry, never a replica's own clock.
    ///
    /// Executing the stamped command at `now_ms` gives the same reply and
    /// mutations as executing the original at `now_ms`. So a relative
    /// expiry whose absolute time would overflow `i64` is left as it is:
    /// executing it reports Redis's "invalid expire time" error either way.
    pub fn stamp(self, now_ms: u64) -> Command {
        let now = super::exec::now_i64(now_ms);
        match self {
            Self::Set {
                key,
                value,
                condition,
                ttl: SetTtl::Expire(e),
                get,
            } => Self::Set {
                key,
                value,
                condition,
                ttl: SetTtl::Expire(stamp_expiry(e, now)),
                get,
            },
            Self::SetEx {
                key,
                seconds,
                value,
            } => match at(seconds.checked_mul(1000), now) {
                Some(ms) => set_pxat(key, value, ms),
                None => Self::SetEx {
                    key,
                    seconds,
                    value,
                },
            },
            Self::PSetEx { key, ms, value } => match at(Some(ms), now) {
                Some(at_ms) => set_pxat(key, value, at_ms),
                None => Self::PSetEx { key, ms, value },
            },
            Self::GetEx {
                key,
                ttl: GetExTtl::Expire(e),
            } => Self::GetEx {
                key,
                ttl: GetExTtl::Expire(stamp_expiry(e, now)),
            },
            Self::Expire {
                key,
                seconds,
                condition,
            } => match at(seconds.checked_mul(1000), now) {
                Some(unix_ms) => Self::PExpireAt {
                    key,
                    unix_ms,
                    condition,
                },
                None => Self::Expire {
                    key,
                    seconds,
                    condition,
                },
            },
            Self::PExpire { key, ms, condition } => match at(Some(ms), now) {
                Some(unix_ms) => Self::PExpireAt {
                    key,
                    unix_ms,
                    condition,
                },
                None => Self::PExpire { key, ms, condition },
            },
            other => other,
        }
    }
}

/// `now + delta_ms`, if both are known and the sum fits.
fn at(delta_ms: Option<i64>, now: i64) -> Option<i64> {
    delta_ms?.checked_add(now)
}

fn stamp_expiry(e: Expiry, now: i64) -> Expiry {
    let absolute = match e {
        Expiry::Ex(s) => at(s.checked_mul(1000), now),
        Expiry::Px(ms) => at(Some(ms), now),
        Expiry::ExAt(_) | Expiry::PxAt(_) => None,
    };
    absolute.map_or(e, Expiry::PxAt)
}

/// SETEX and PSETEX are SET with an expiry: same reply (`OK`), same effect
/// (the value replaced, the old TTL dropped).
fn set_pxat(key: Vec<u8>, value: Vec<u8>, at_ms: i64) -> Command {
    Command::Set {
        key,
        value,
        condition: SetCondition::Always,
        ttl: SetTtl::Expire(Expiry::PxAt(at_ms)),
        get: false,
    }
}
