//! `/metrics` read the way a Prometheus server reads it: after some traffic the exposition
//! parses, every family has its HELP and TYPE lines before its samples, every sample carries the
//! instance's label, and the `seano_` families are exactly those of the README's metrics table,
//! with its types.

use std::collections::{BTreeMap, BTreeSet};

use prometheus_parse::{LineInfo, Scrape, Value};

use crate::helpers::{spawn_app, wait_for};

const INSTANCE: &str = "test-gw";

/// The README's metrics table: each `seano_` name with its type (the first word of the type
/// column).
fn documented() -> BTreeMap<String, String> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n### Metrics\n")
        .nth(1)
        .expect("the README has a Metrics section");
    let section = section.split("\n#").next().unwrap();
    let mut names = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `seano_")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let kind = cells[1].split([',', ' ']).next().unwrap();
        for name in cells[0].split('`').skip(1).step_by(2) {
            names.insert(name.to_owned(), kind.to_owned());
        }
    }
    names
}

/// Everything wrong with `text` as the exposition of the `documented` families; empty when
/// nothing is.
fn problems(text: &str, documented: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Doc { metric_name, .. } => {
                if !help.insert(metric_name.to_owned()) {
                    problems.push(format!("a second HELP for {metric_name}"));
                }
            }
            LineInfo::Type { .. } => {
                let words: Vec<&str> = line.split_whitespace().collect();
                let [_, _, name, kind] = words[..] else {
                    problems.push(format!("a TYPE line with extra words: {line:?}"));
                    continue;
                };
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    problems.push(format!("an unknown type: {line:?}"));
                }
                if !help.contains(name) {
                    problems.push(format!("{name} has no HELP before its TYPE"));
                }
                if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    problems.push(format!("a second TYPE for {name}"));
                }
            }
            LineInfo::Sample {
                metric_name, value, ..
            } => {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .filter_map(|suffix| metric_name.strip_suffix(suffix))
                    .find(|base| types.get(*base).is_some_and(|k| k == "histogram"))
                    .unwrap_or(metric_name);
                if !types.contains_key(family) {
                    problems.push(format!("{metric_name} has a sample before its TYPE"));
                }
                if !["+Inf", "-Inf", "NaN"].contains(&value) && value.parse::<f64>().is_err() {
                    problems.push(format!("not a number: {line:?}"));
                }
            }
            LineInfo::Empty => {}
            // The encoder writes no other comments.
            LineInfo::Ignored => problems.push(format!("not a line of the format: {line:?}")),
        }
    }

    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    for sample in &scrape.samples {
        if sample.labels.get("instance") != Some(INSTANCE) {
            problems.push(format!(
                "{} {{{}}} lacks instance=\"{INSTANCE}\"",
                sample.metric, sample.labels
            ));
        }
        if let Value::Histogram(buckets) = &sample.value {
            let cumulative = buckets
                .windows(2)
                .all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count);
            if !cumulative || buckets.last().map(|b| b.less_than) != Some(f64::INFINITY) {
                problems.push(format!(
                    "{}: buckets not cumulative up to +Inf",
                    sample.metric
                ));
            }
        }
    }
    for (name, kind) in documented {
        match types.get(name) {
            Some(k) if k == kind => {}
            Some(k) => problems.push(format!("{name} is a {k}; the README says {kind}")),
            None => problems.push(format!("{name} (in the README) is not exposed")),
        }
        if !scrape.samples.iter().any(|s| s.metric == *name) {
            problems.push(format!("{name} has no sample"));
        }
    }
    for name in types.keys().filter(|n| n.starts_with("seano_")) {
        if !documented.contains_key(name) {
            problems.push(format!("{name} is exposed but not in the README's table"));
        }
    }
    #[cfg(target_os = "linux")]
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        if !types.contains_key(name) {
            problems.push(format!("{name} is not exposed"));
        }
    }
    problems
}

#[actix_web::test]
async fn metrics_after_traffic_parse_as_prometheus_text_with_every_documented_family() {
    let mut app = spawn_app().await;
    let _ws = app.connect_ws("/api/ws").await;
    app.publish("1/vehicle_log", r#"{"mode":"AUTO"}"#).await;
    app.publish("1/vehicle_log", "not json").await;
    let scrape = || app.metrics();
    wait_for("the metrics to count the traffic", || async {
        let text = scrape().await;
        text.contains(
            "seano_messages_broadcast_total{instance=\"test-gw\",type=\"vehicle_log\"} 1\n",
        ) && text.contains(
            "seano_messages_rejected_total{instance=\"test-gw\",reason=\"invalid_json\"} 1\n",
        )
    })
    .await;

    let text = scrape().await;
    let problems = problems(&text, &documented());
    assert!(problems.is_empty(), "{problems:#?}\nin\n{text}");
    app.stop().await;
}

#[test]
fn the_readme_table_lists_the_metrics() {
    let documented = documented();
    assert!(documented.len() > 20, "{documented:?}");
    assert_eq!(documented["seano_messages_stored_total"], "counter");
    assert_eq!(documented["seano_commit_seconds"], "histogram");
}

#[test]
fn the_check_passes_the_gateways_own_exposition_and_catches_broken_ones() {
    let good = seano_gateway::metrics::Metrics::new(INSTANCE)
        .encode(0)
        .unwrap();
    let documented = documented();
    assert_eq!(problems(&good, &documented), Vec::<String>::new());

    let broken = [
        // A sample without the instance label.
        good.replace(
            "seano_last_seq{instance=\"test-gw\"}",
            "seano_last_seq",
        ),
        // An unknown type.
        good.replace("# TYPE seano_last_seq gauge", "# TYPE seano_last_seq gauges"),
        // A sample that is not a line of the format.
        good.replace("seano_last_seq{instance=\"test-gw\"} 0", "seano_last_seq{instance=\"test-gw\" 0"),
        // A value that is not a number.
        good.replace("seano_last_seq{instance=\"test-gw\"} 0", "seano_last_seq{instance=\"test-gw\"} zero"),
        // A family without HELP.
        good.replace(
            "# HELP seano_last_seq The last seq committed by this gateway.\n",
            "",
        ),
        // A documented family missing.
        good.lines()
            .filter(|l| !l.contains("seano_last_seq"))
            .map(|l| format!("{l}\n"))
            .collect(),
        // Buckets that are not cumulative.
        good.replace(
            "seano_batch_size_bucket{instance=\"test-gw\",le=\"+Inf\"} 0",
            "seano_batch_size_bucket{instance=\"test-gw\",le=\"+Inf\"} 0\nseano_batch_size_bucket{instance=\"test-gw\",le=\"7\"} 0",
        ),
    ];
    for text in broken {
        assert_ne!(text, good, "the breakage applies");
        assert!(
            !problems(&text, &documented).is_empty(),
            "accepted:\n{text}"
        );
    }
}
