//! Hostile sources (issue 6): sources that trickle, never end, send a gibibyte or a gzip bomb,
//! redirect to the metadata endpoint or loopback, resolve to loopback, loop, break TLS or reset
//! the connection mid-body, polled every second by the real daemon beside a well-behaved project.
//!
//! Each must end at its limit and be recorded as a failed run in the `fetch` stage with a message
//! naming the cause, while the well-behaved project keeps its schedule and delivers, and the
//! daemon's memory stays far below what the sources send.
//!
//! The daemon runs with private sources off and one exception, `allowed_private_networks =
//! ["127.0.0.2/32"]`: the hostile server listens on 127.0.0.2, so it is reachable, while
//! 127.0.0.1 (where the test source and moto live), `localhost` and 169.254.169.254 are not.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use sluice_tests::hostile_source::{BOMB, HostileSource};
use sluice_tests::world::{FAST, Tenant, World, wait_for};
use sluice_tests::{ADMIN_TOKEN, sluice_bin};

/// Small limits, so that every hostile source meets one within a couple of seconds.
const LIMITS: &str = r#"
[source]
connect_timeout_ms = 1000
timeout_ms = 2000
max_body_bytes = 1048576
max_redirects = 3
allowed_private_networks = ["127.0.0.2/32"]
"#;

/// The body cap above, as the messages print it.
const CAP: &str = "larger than the limit of 1048576 bytes";

/// Runs each hostile project must have had before the verdict: three failures turn a project
/// `failing` under `FAST`.
const FAILURES: usize = 3;

/// The daemon's peak resident memory must stay below this, in MiB: the sources send gibibytes,
/// the daemon may hold only a few capped bodies at once.
const MAX_PEAK_RSS_MIB: u64 = 300;

/// The hostile cases: name, source URL, and what every failed run's message must contain.
fn cases(hostile: &HostileSource, world: &World) -> Vec<(&'static str, String, Vec<String>)> {
    let port = hostile.addr.port();
    // A redirect to the test source on 127.0.0.1, whose request log shows it never arrived.
    let loopback = format!("{}/items?hostile=1", world.source.base);
    let metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/";
    let refused = |what: &str| {
        vec![format!("refused to connect to {what}"), "addresses are blocked".into(), "allowed_private_networks".into()]
    };
    vec![
        ("trickle", hostile.url("/trickle"), vec!["the source timed out".into(), "2000 ms timeout_ms limit".into()]),
        ("endless", hostile.url("/endless"), vec![CAP.into()]),
        ("gib", hostile.url("/gib"), vec![CAP.into()]),
        ("gib-undeclared", hostile.url("/gib-undeclared"), vec![CAP.into()]),
        ("gzip-bomb", hostile.url("/bomb"), vec![CAP.into(), "counted after decompression".into()]),
        ("redirect-metadata", hostile.url(&format!("/redirect/{metadata}")), {
            let mut want = refused("169.254.169.254");
            want.push("link-local (cloud metadata) addresses".into());
            want
        }),
        ("redirect-loopback", hostile.url(&format!("/redirect/{loopback}")), {
            let mut want = refused("127.0.0.1");
            want.push("loopback addresses".into());
            want
        }),
        ("localhost", format!("http://localhost:{port}/ok"), {
            let mut want = refused("localhost at ");
            want.push("loopback addresses".into());
            want
        }),
        ("redirect-loop", hostile.url("/loop"), vec!["the source redirected more than 3 times".into()]),
        (
            "tls",
            format!("https://{}/ok", hostile.addr),
            vec![format!("the TLS handshake with https://{} failed", hostile.addr)],
        ),
        (
            "reset",
            hostile.url("/reset"),
            vec!["could not read the response body".into(), "Connection reset by peer".into()],
        ),
    ]
}

fn time(run: &Value, field: &str) -> Timestamp {
    run[field].as_str().unwrap().parse().unwrap()
}

fn millis(run: &Value, from: &str, to: &str) -> i64 {
    time(run, to).duration_since(time(run, from)).as_millis() as i64
}

/// A project's runs that did run (not skipped because the previous one was still going).
fn ran(world: &World, tenant: &Tenant, id: &str) -> Vec<Value> {
    world.runs(tenant, id).into_iter().filter(|run| run["outcome"] != "skipped").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sources_fail_at_their_limits_without_touching_other_projects() {
    // Private sources off, with 127.0.0.2 the one exception (see the module doc).
    let world = World::start_configured(false, &format!("{FAST}{LIMITS}"), &[]);
    let hostile = HostileSource::start(Ipv4Addr::new(127, 0, 0, 2));
    // The bomb is smaller than the cap on the wire: only its decoded size can fail it.
    assert!(BOMB.len() < 1_048_576 && BOMB.len() > 1_000_000, "{} bytes", BOMB.len());
    let every_second =
        |name: &str, url: &str| json!({"name": name, "schedule": "rate(1 second)", "source": {"url": url}});

    // The well-behaved project polls the one polite route of the same server.
    let good = world.tenant("good", "111111111111").await;
    let good_arn = good.aws.stream("events").await;
    let good_project = world.project(&good, "passthrough", "/ok", &good_arn, every_second("good", &hostile.url("/ok")));
    let good_id = good_project["id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(30), "the well-behaved project's first run", || {
        ran(&world, &good, &good_id).iter().any(|run| run["outcome"] == "succeeded").then_some(())
    });
    let baseline_rss = world.daemon().peak_rss_mib();

    let evil = world.tenant("evil", "222222222222").await;
    let evil_arn = evil.aws.stream("events").await;
    let cases = cases(&hostile, &world);
    let mut projects = Vec::new();
    for (name, url, want) in &cases {
        let project = world.project(&evil, "passthrough", "/", &evil_arn, every_second(name, url));
        projects.push((*name, project["id"].as_str().unwrap().to_string(), want));
    }
    let from = Timestamp::now();
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(40), &format!("{FAILURES} runs of every hostile project"), || {
        projects.iter().all(|(_, id, _)| ran(&world, &evil, id).len() >= FAILURES).then_some(())
    });
    let to = Timestamp::now();
    let elapsed = started.elapsed();
    let peak_rss = world.daemon().peak_rss_mib();

    // Every hostile run failed in the fetch stage, within its limit, saying why.
    for (name, id, want) in &projects {
        let runs = ran(&world, &evil, id);
        for run in &runs {
            assert_eq!(
                (run["outcome"].as_str(), run["error"]["stage"].as_str()),
                (Some("failed"), Some("fetch")),
                "{name}: {run}"
            );
            let message = run["error"]["message"].as_str().unwrap();
            for part in want.iter() {
                assert!(message.contains(part.as_str()), "{name}: `{part}` missing from: {message}");
            }
            // The 2 s total deadline bounds every fetch; the rest of a run takes milliseconds.
            let took = millis(run, "started_at", "finished_at");
            assert!(took < 3_500, "{name}: a run took {took} ms: {run}");
            if *name == "trickle" {
                assert!(took >= 2_000, "{name}: ended after {took} ms, before its deadline: {run}");
            }
        }
        eprintln!("{name}: {}", runs[0]["error"]["message"].as_str().unwrap());
        let project = world.show(&evil, id);
        assert_eq!(project["status"], "failing", "{name}: {project}");
    }

    // The well-behaved project kept its schedule: a run about every second, each on time and
    // successful, and none skipped.
    let good_runs: Vec<Value> = world
        .runs(&good, &good_id)
        .into_iter()
        .filter(|run| run["trigger"] == "schedule" && (from..to).contains(&time(run, "scheduled_at")))
        .collect();
    for run in &good_runs {
        assert_eq!(run["outcome"], "succeeded", "a well-behaved run beside the hostile sources: {run}");
        let late = millis(run, "scheduled_at", "started_at");
        // The scheduler's jitter window is 200 ms; the rest is slack for a shared two-core machine.
        assert!(late < 1_000, "a well-behaved run started {late} ms late: {run}");
    }
    // One tick per second of the window, less the run still in flight at its end and one the
    // jitter may have moved across either edge.
    let expected = elapsed.as_secs_f64() - 2.0;
    assert!(good_runs.len() as f64 >= expected, "{} runs in {elapsed:?}", good_runs.len());

    // Its records arrived, one per successful run; the hostile tenant's stream got nothing.
    let succeeded = world.runs(&good, &good_id).iter().filter(|run| run["outcome"] == "succeeded").count();
    let records = good.aws.read(&good_arn).await;
    assert!(records.len() >= succeeded, "{} records for {succeeded} successful runs", records.len());
    assert!(records.iter().all(|(key, data)| *key == good_id && data == r#"{"temperature": 21.5}"#), "{records:?}");
    assert!(evil.aws.read(&evil_arn).await.is_empty(), "a hostile project delivered something");

    // The refused targets were never contacted, and the others were served every run.
    assert!(world.source.seen().is_empty(), "the redirect reached 127.0.0.1: {:?}", world.source.seen());
    for route in ["/trickle", "/endless", "/gib", "/gib-undeclared", "/bomb", "/loop", "/reset", "tls"] {
        assert!(hostile.hits(route) >= FAILURES, "{route}: {} requests", hostile.hits(route));
    }

    eprintln!(
        "daemon peak RSS {baseline_rss} MiB before the hostile sources, {peak_rss} MiB after {elapsed:?} of them; \
         well-behaved: {} scheduled runs, {} records",
        good_runs.len(),
        records.len()
    );
    assert!(peak_rss < MAX_PEAK_RSS_MIB, "daemon peak RSS {peak_rss} MiB (baseline {baseline_rss} MiB)");
}

#[test]
fn a_bad_allowed_private_network_stops_the_daemon_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[source]\nallowed_private_networks = [\"10.1.2.0/24\", \"10.1.2.3/24\"]\n").unwrap();
    let out = Command::new(sluice_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .env("SLUICE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = "in source.allowed_private_networks, `10.1.2.3/24` has bits set past its /24 prefix; write 10.1.2.0/24";
    assert!(stderr.contains(want), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing was bound");
}
