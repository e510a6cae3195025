//! The results: `target/bench/paths.json` (everything measured) and a Markdown table, printed
//! and written to `target/bench/paths.md`. Ratios are to the direct path of the same run.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

pub fn write(rows: &[Value], quick: bool, rate: u32) -> Result<String> {
    let out = Path::new("target/bench");
    std::fs::create_dir_all(out)?;
    let doc = json!({ "quick": quick, "rate": rate, "paths": rows });
    std::fs::write(out.join("paths.json"), serde_json::to_string_pretty(&doc)?)?;
    let mut table = table(rows);
    table.push_str(&failed_answers(rows));
    std::fs::write(out.join("paths.md"), &table)?;
    Ok(table)
}

fn table(rows: &[Value]) -> String {
    let direct = rows.iter().find(|r| r["path"] == "direct");
    let num = |row: &Value, ptr: &str| row.pointer(ptr).and_then(Value::as_f64);
    let ratio = |row: &Value, ptr: &str| match (num(row, ptr), direct.and_then(|d| num(d, ptr))) {
        (Some(v), Some(d)) if d > 0.0 => format!("{:.2}", v / d),
        _ => "-".into(),
    };
    let cell = |row: &Value, ptr: &str| num(row, ptr).map_or("-".into(), |v| format!("{v}"));
    let mut s = String::from(
        "| path | h1 p50 / p90 / p99 / p999 ms @1k rps | h2 p50 / p99 ms @1k rps | rps c=1 | rps c=16 | rps c=64 (x direct) | h2 rps 8x8 streams (x direct) | new conn/s (x direct) | bulk Gbit/s (x direct) | proxy CPU s / 1k req | proxy vCPU @1k rps | proxy RSS MiB @1k rps (anon) | proxy peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let name = row["path"].as_str().unwrap_or("");
        if let Some(why) = row["skipped"].as_str().or(row["error"].as_str()) {
            let _ = writeln!(s, "| {name} | {why} | | | | | | | | | | | |");
            continue;
        }
        let h1 = ["p50", "p90", "p99", "p999"]
            .map(|p| cell(row, &format!("/h1_fixed_rate/latency_ms/{p}")))
            .join(" / ");
        let h2 = ["p50", "p99"]
            .map(|p| cell(row, &format!("/h2_fixed_rate/latency_ms/{p}")))
            .join(" / ");
        let _ = writeln!(
            s,
            "| {name} | {h1} | {h2} | {} | {} | {} ({}) | {} ({}) | {} ({}) | {} ({}) | {} | {} | {} | {} |",
            cell(row, "/c1/rps"),
            cell(row, "/c16/rps"),
            cell(row, "/c64/rps"),
            ratio(row, "/c64/rps"),
            cell(row, "/h2_c64/rps"),
            ratio(row, "/h2_c64/rps"),
            cell(row, "/new_connections/rps"),
            ratio(row, "/new_connections/rps"),
            cell(row, "/bulk_gbps"),
            ratio(row, "/bulk_gbps"),
            cell(row, "/proxy_cpu_s_per_1k_requests"),
            each(&row["proxy_at_rate"]["vcpu"], 3),
            at_rate_rss(&row["proxy_at_rate"]),
            each(&row["proxy_peak_rss_mb"], 1),
        );
    }
    s
}

/// A line per throughput phase that got answers other than 2xx/3xx: such a phase's requests/s does not
/// measure the path, so it must not be read as if it did.
fn failed_answers(rows: &[Value]) -> String {
    let mut s = String::new();
    for row in rows {
        for phase in ["c1", "c16", "c64", "new_connections", "h2_c64"] {
            let failed = row[phase]["non_2xx"].as_u64().unwrap_or(0);
            if failed > 0 {
                let _ = writeln!(
                    s,
                    "\n{} {phase}: {failed} of {} answers were not 2xx/3xx",
                    row["path"].as_str().unwrap_or(""),
                    row[phase]["requests"],
                );
            }
        }
    }
    s
}

/// One figure per proxy process (both node agents, or both HAProxies); `-` when none runs.
fn each(v: &Value, decimals: usize) -> String {
    let each: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .map(|x| format!("{x:.decimals$}"))
        .collect();
    if each.is_empty() {
        "-".into()
    } else {
        each.join(", ")
    }
}

/// `23.7 (5.1), 23.5 (4.9)`: each proxy's resident memory, with its anonymous part.
fn at_rate_rss(v: &Value) -> String {
    let all = v["rss_mb"].as_array().into_iter().flatten();
    let anon = v["anon_rss_mb"].as_array().into_iter().flatten();
    let each: Vec<String> = all
        .zip(anon)
        .filter_map(|(r, a)| Some(format!("{:.1} ({:.1})", r.as_f64()?, a.as_f64()?)))
        .collect();
    if each.is_empty() {
        "-".into()
    } else {
        each.join(", ")
    }
}
