//! The table: one line per workload and engine, then Cairn against the
//! best peer per workload. Markdown, so a run pastes into
//! `docs/benchmarks.md` as it is. Also the line format a child process
//! uses to hand its rows to the parent.

use crate::error::{Error, Result};
use crate::workloads::{Measured, Row, Workload};
use std::fmt::Write;

/// Rows of one engine.
pub type EngineRows = (String, Vec<Row>);

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

fn int(v: f64) -> String {
    let s = format!("{v:.0}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 && c.is_ascii_digit() {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The throughput column: ops/s, or seconds for `compact`.
fn figure(w: Workload, m: &Measured) -> String {
    if w.ratio_on_time() {
        format!("{:.2} s", m.secs)
    } else {
        int(m.ops_per_sec())
    }
}

/// The full table and the summary with ratios.
pub fn table(results: &[EngineRows]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | engine | ops/s | MB/s | p50 us | p99 us | p99.9 us | write amp | space amp | peak RSS MiB | note |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for w in workloads_in(results) {
        for (engine, rows) in results {
            let Some(row) = rows.iter().find(|r| r.workload == w) else {
                continue;
            };
            let _ = match &row.measured {
                Some(m) if w.ratio_on_time() => writeln!(
                    s,
                    "| {} | {engine} | {} | | | | | | {} | {} | {} |",
                    w.name(),
                    figure(w, m),
                    opt(m.space_amp),
                    m.peak_rss
                        .map_or_else(|| "-".into(), |b| format!("{}", b >> 20)),
                    row.note
                ),
                None => writeln!(
                    s,
                    "| {} | {engine} | n/a | | | | | | | | {} |",
                    w.name(),
                    row.note
                ),
                Some(m) => writeln!(
                    s,
                    "| {} | {engine} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
                    w.name(),
                    figure(w, m),
                    m.mb_per_sec(),
                    m.p50_us,
                    m.p99_us,
                    m.p999_us,
                    opt(m.write_amp),
                    opt(m.space_amp),
                    m.peak_rss
                        .map_or_else(|| "-".into(), |b| format!("{}", b >> 20)),
                    row.note
                ),
            };
        }
    }
    let _ = writeln!(s);
    s.push_str(&ratios(results));
    s
}

fn workloads_in(results: &[EngineRows]) -> Vec<Workload> {
    let mut ws: Vec<Workload> = Vec::new();
    for (_, rows) in results {
        for r in rows {
            if !ws.contains(&r.workload) {
                ws.push(r.workload);
            }
        }
    }
    ws
}

/// Cairn / best peer per workload: ops/s over ops/s, or for `compact`
/// the peer's seconds over Cairn's (so above 1.0 is Cairn ahead either way).
fn ratios(results: &[EngineRows]) -> String {
    let Some((_, cairn)) = results.iter().find(|(e, _)| e == "cairn") else {
        return String::new();
    };
    if results.len() < 2 {
        return String::new();
    }
    let mut s = String::from(
        "| workload | cairn | best peer | peer figure | cairn / best peer |\n|---|---:|---|---:|---:|\n",
    );
    for w in workloads_in(results) {
        let Some(c) = cairn
            .iter()
            .find(|r| r.workload == w)
            .and_then(|r| r.measured.as_ref())
        else {
            continue;
        };
        let score = |m: &Measured| {
            if w.ratio_on_time() {
                -m.secs
            } else {
                m.ops_per_sec()
            }
        };
        let best = results
            .iter()
            .filter(|(e, _)| e != "cairn")
            .filter_map(|(e, rows)| {
                let m = rows.iter().find(|r| r.workload == w)?.measured.as_ref()?;
                Some((e, m))
            })
            .max_by(|a, b| score(a.1).total_cmp(&score(b.1)));
        let _ = match best {
            None => writeln!(s, "| {} | {} | none can | | |", w.name(), figure(w, c)),
            Some((e, m)) => {
                let ratio = if w.ratio_on_time() {
                    m.secs / c.secs.max(1e-9)
                } else {
                    c.ops_per_sec() / m.ops_per_sec().max(1e-9)
                };
                writeln!(
                    s,
                    "| {} | {} | {e} | {} | {ratio:.2}x |",
                    w.name(),
                    figure(w, c),
                    figure(w, m)
                )
            }
        };
    }
    s
}

const NONE: &str = "-";

fn field_opt_f(v: Option<f64>) -> String {
    v.map_or_else(|| NONE.into(), |v| v.to_string())
}

fn field_opt_u(v: Option<u64>) -> String {
    v.map_or_else(|| NONE.into(), |v| v.to_string())
}

/// One row as a tab-separated line (notes never hold tabs or newlines).
pub fn to_line(r: &Row) -> String {
    let note = r.note.replace(['\t', '\n'], " ");
    match &r.measured {
        None => format!("ROW\t{}\tn/a\t{note}", r.workload.name()),
        Some(m) => format!(
            "ROW\t{}\tok\t{note}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.workload.name(),
            m.ops,
            m.secs,
            m.bytes,
            m.p50_us,
            m.p99_us,
            m.p999_us,
            field_opt_f(m.write_amp),
            field_opt_f(m.space_amp),
            field_opt_u(m.peak_rss)
        ),
    }
}

/// Parses a line of [`to_line`]; `Ok(None)` for lines that are not rows.
pub fn from_line(line: &str) -> Result<Option<Row>> {
    let mut f = line.split('\t');
    if f.next() != Some("ROW") {
        return Ok(None);
    }
    let bad = || Error::Check(format!("unreadable row line {line:?}"));
    let workload = Workload::parse(f.next().ok_or_else(bad)?)?;
    let status = f.next().ok_or_else(bad)?;
    let note = f.next().ok_or_else(bad)?.to_string();
    if status == "n/a" {
        return Ok(Some(Row {
            workload,
            measured: None,
            note,
        }));
    }
    let mut num = || -> Result<&str> { f.next().ok_or_else(bad) };
    let u = |s: &str| s.parse::<u64>().map_err(|_| bad());
    let fl = |s: &str| s.parse::<f64>().map_err(|_| bad());
    let m = Measured {
        ops: u(num()?)?,
        secs: fl(num()?)?,
        bytes: u(num()?)?,
        p50_us: fl(num()?)?,
        p99_us: fl(num()?)?,
        p999_us: fl(num()?)?,
        write_amp: opt_parse(num()?, fl)?,
        space_amp: opt_parse(num()?, fl)?,
        peak_rss: opt_parse(num()?, u)?,
    };
    Ok(Some(Row {
        workload,
        measured: Some(m),
        note,
    }))
}

fn opt_parse<T>(s: &str, p: impl Fn(&str) -> Result<T>) -> Result<Option<T>> {
    if s == NONE { Ok(None) } else { p(s).map(Some) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    #[test]
    fn rows_survive_the_trip_through_a_child_process() {
        // Pins the parent/child line format: every field comes back.
        let row = Row {
            workload: Workload::Overwrite,
            measured: Some(Measured {
                ops: 10,
                secs: 0.5,
                bytes: 1160,
                p50_us: 1.5,
                p99_us: 9.0,
                p999_us: 20.25,
                write_amp: Some(1.75),
                space_amp: None,
                peak_rss: Some(1 << 30),
            }),
            note: "a\tnote".into(),
        };
        let back = from_line(&to_line(&row)).unwrap().unwrap();
        assert_eq!(back.measured, row.measured);
        assert_eq!(back.note, "a note");
        let na = Row {
            workload: Workload::Compact,
            measured: None,
            note: "none".into(),
        };
        assert_eq!(from_line(&to_line(&na)).unwrap(), Some(na));
        assert_eq!(from_line("progress line").unwrap(), None);
    }

    #[test]
    fn ratio_compares_cairn_with_the_best_peer() {
        // Pins the ratio column: best peer by throughput, and by time for compact.
        let m = |ops: u64, secs: f64| {
            Some(Measured {
                ops,
                secs,
                ..Measured::default()
            })
        };
        let row = |w, m| Row {
            workload: w,
            measured: m,
            note: String::new(),
        };
        let results = vec![
            (
                "cairn".to_string(),
                vec![
                    row(Workload::FillSeq, m(100, 1.0)),
                    row(Workload::Compact, m(0, 2.0)),
                ],
            ),
            (
                "a".to_string(),
                vec![
                    row(Workload::FillSeq, m(50, 1.0)),
                    row(Workload::Compact, m(0, 1.0)),
                ],
            ),
            (
                "b".to_string(),
                vec![
                    row(Workload::FillSeq, m(200, 1.0)),
                    row(Workload::Compact, None),
                ],
            ),
        ];
        let t = table(&results);
        assert!(t.contains("| fillseq | 100 | b | 200 | 0.50x |"), "{t}");
        assert!(
            t.contains("| compact | 2.00 s | a | 1.00 s | 0.50x |"),
            "{t}"
        );
    }
}
