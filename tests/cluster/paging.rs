//! Lists that can grow without bound are read a page at a time: `?limit=N`, and `next`
//! to give as `?after=` for the following page, until `next` is null.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::util::{cli, eventually, Cluster};

/// Every item of a paged list, page by page; also the number of pages.
async fn all_pages(c: &Cluster, path: &str, key: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let cursor = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
        let (status, page) = c.call(1, Method::GET, &format!("{path}{sep}limit={limit}{cursor}"), None).await;
        assert_eq!(status, 200, "{path}: {page}");
        let got = page[key].as_array().unwrap().clone();
        assert!(got.len() <= limit);
        items.extend(got);
        pages += 1;
        match &page["next"] {
            Value::Null => return (items, pages),
            next => after = Some(next.as_str().map(String::from).unwrap_or_else(|| next.to_string())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_elected_table_actions_and_anomalies_page() {
    let c = Cluster::start(3).await;
    let mut setup = vec![
        ("/v1/regions/eu".to_string(), json!({"cidrs": ["10.1.0.0/16"], "fallback": []})),
        ("/v1/regions/us".to_string(), json!({"cidrs": ["10.2.0.0/16"], "fallback": []})),
        ("/v1/zones/example.com".to_string(), json!({})),
        ("/v1/sites/s1".to_string(), json!({"region": "eu"})),
    ];
    for i in 0..23 {
        setup.push((format!("/v1/domains/d{i:02}.example.com"), json!({"sites": ["s1"]})));
    }
    for (path, body) in &setup {
        let (status, answer) = c.call(1, Method::PUT, path, Some(body.clone())).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    // 23 domains x 2 regions, elected by the leader.
    eventually(Duration::from_secs(10), "every row to be elected", || async {
        let (_, t) = c.call(1, Method::GET, "/v1/dispatch?limit=10000", None).await;
        (t["rows"].as_array()?.len() == 46).then_some(())
    })
    .await;
    let (_, whole) = c.call(1, Method::GET, "/v1/dispatch?limit=10000", None).await;
    assert_eq!(whole["next"], Value::Null);
    let (rows, pages) = all_pages(&c, "/v1/dispatch", "rows", 7).await;
    assert_eq!(pages, 7);
    assert_eq!(Value::Array(rows), whole["rows"], "the pages together are the table, in order, once each");
    let (status, bad) = c.call(1, Method::GET, "/v1/dispatch?after=nothing", None).await;
    assert_eq!((status, bad["field"].as_str()), (400, Some("after")));
    let (status, _) = c.call(1, Method::GET, "/v1/dispatch?limit=10001", None).await;
    assert_eq!(status, 400, "the page size is capped");

    for i in 0..25 {
        let body = json!({"type": "reindex", "target": format!("t{i}"), "priority": 1 + i % 5});
        assert_eq!(c.call(1, Method::POST, "/v1/actions", Some(body)).await.0, 202);
        let anomaly = json!({"timestamp": "2026-01-01T00:00:00Z", "type": "spike", "severity": "low",
                             "confidence_score": 0.5, "details": {}});
        assert_eq!(c.call(1, Method::POST, "/v1/anomalies", Some(anomaly)).await.0, 201);
    }
    let (actions, pages) = all_pages(&c, "/v1/actions", "actions", 10).await;
    assert_eq!(pages, 3);
    let ids: Vec<u64> = actions.iter().map(|a| a["action_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=25).collect::<Vec<_>>());
    // The queue pages in queue order (priority, then age).
    let (queued, _) = all_pages(&c, "/v1/actions?status=queued", "actions", 4).await;
    let order: Vec<(u64, u64)> =
        queued.iter().map(|a| (a["priority"].as_u64().unwrap(), a["action_id"].as_u64().unwrap())).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!((order.len(), &order), (25, &sorted));
    let (anomalies, pages) = all_pages(&c, "/v1/anomalies", "anomalies", 10).await;
    assert_eq!((anomalies.len(), pages), (25, 3));

    // The CLI reads every page.
    let e = c.peer(1).url();
    let listed = |args: &[&str], key: &str| -> usize {
        let out = cli(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v[key].as_array().map(Vec::len).unwrap_or(0)
    };
    assert_eq!(listed(&["dispatch", "table", "--endpoint", &e], "rows"), 46);
    assert_eq!(listed(&["action", "list", "--endpoint", &e], "actions"), 25);
}
