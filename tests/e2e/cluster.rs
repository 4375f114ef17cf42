//! Hosts sharing one store by leases (`[cluster] enabled`): three real `sluice serve` processes on
//! moto's DynamoDB share the partitions evenly, a `kill -9`ed host's projects run again on the
//! others within two lease periods, a project is never run twice for one scheduled time, and a
//! host stopped with SIGTERM hands its leases over at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_tests::world::{FAST, Tenant, World, block_on, wait_for};
use sluice_tests::{ADMIN_TOKEN, Daemon, PLATFORM_PRINCIPAL, http_text};

const PARTITIONS: u32 = 32;
/// The lease period of these tests: hosts renew every second.
const LEASE_MS: u64 = 3_000;
const PROJECTS: usize = 24;

fn config() -> String {
    format!(
        "{FAST}\n[store]\nbackend = \"dynamodb\"\ntable = \"sluice\"\nbucket = \"sluice-store\"\ncreate_table = true\n\
         [cluster]\nenabled = true\npartitions = {PARTITIONS}\nlease_ms = {LEASE_MS}\n"
    )
}

/// Another host of the world's cluster, in a data directory of its own.
fn host(world: &World) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", world.proxy.endpoint.clone()),
        ("SLUICE_ALLOW_PRIVATE_SOURCES", "true".to_string()),
        ("SLUICE_PLATFORM_PRINCIPAL_ARN", PLATFORM_PRINCIPAL.to_string()),
    ];
    (Daemon::start_configured(dir.path(), &env, &config()), dir)
}

/// A metric of one host, 0 when it is not rendered.
fn metric(daemon: &Daemon, series: &str) -> f64 {
    let (_, text) = http_text(daemon.addr, "/metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn leases(daemons: &[&Daemon]) -> Vec<u32> {
    daemons.iter().map(|d| metric(d, "sluice_cluster_leases") as u32).collect()
}

/// `count` projects of the `incremental` plugin on `path` at `rate(2 seconds)`, each with a stream
/// of its own to read back, once each has run; their ids and streams.
async fn incremental_projects(world: &World, tenant: &Tenant, count: usize, path: &str) -> (Vec<String>, Vec<String>) {
    let (mut ids, mut streams) = (Vec::new(), Vec::new());
    for n in 0..count {
        let arn = tenant.aws.stream(&format!("events-{n}")).await;
        let project = world.project(tenant, "incremental", path, &arn, json!({"schedule": "rate(2 seconds)"}));
        ids.push(project["id"].as_str().unwrap().to_string());
        streams.push(arn);
    }
    wait_for(Duration::from_secs(60), "every project to have run", || {
        ids.iter().all(|id| !world.runs(tenant, id).is_empty()).then_some(())
    });
    (ids, streams)
}

/// Waits until each stream holds `items` distinct items (by id).
fn wait_for_every_item(tenant: &Tenant, streams: &[String], items: usize) {
    for arn in streams {
        wait_for(Duration::from_secs(60), "every item in every project's stream", || {
            let ids: std::collections::BTreeSet<String> = block_on(tenant.aws.read(arn))
                .into_iter()
                .filter_map(|(_, data)| serde_json::from_str::<Value>(&data).ok()?["id"].as_str().map(String::from))
                .collect();
            (ids.len() == items).then_some(())
        });
    }
}

/// Each project's runs, newest first.
fn runs_of(world: &World, tenant: &Tenant, ids: &[String]) -> BTreeMap<String, Vec<Value>> {
    ids.iter().map(|id| (id.clone(), world.runs(tenant, id))).collect()
}

/// How many requests the source saw per (project, scheduled time), from the `x-sluice-run`
/// header the raw-output fixture's `prepare` adds.
fn fetches_per_run(world: &World) -> std::collections::BTreeMap<(String, i64), usize> {
    let mut fetches = std::collections::BTreeMap::new();
    for seen in world.source.seen() {
        let Some((project, ms)) = seen.headers.get("x-sluice-run").and_then(|v| v.split_once(' ')) else { continue };
        *fetches.entry((project.to_string(), ms.parse().unwrap())).or_insert(0) += 1;
    }
    fetches
}

/// No two runs of a project for the same scheduled time, on whichever hosts they ran (a tick
/// skipped because the previous run was still going did not run).
fn assert_each_time_ran_once(runs: &BTreeMap<String, Vec<Value>>) {
    for (id, runs) in runs {
        let mut times: Vec<&str> =
            runs.iter().filter(|r| r["outcome"] != "skipped").filter_map(|r| r["scheduled_at"].as_str()).collect();
        let all = times.len();
        times.sort_unstable();
        times.dedup();
        assert_eq!(times.len(), all, "project {id} ran twice for one scheduled time: {runs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_the_partitions_and_a_killed_hosts_projects_run_on_the_others() {
    let world = World::start_configured(true, &config(), &[]);
    world.proxy.one_at_a_time();
    let (second, _second_dir) = host(&world);
    let (third, _third_dir) = host(&world);
    let balanced = |daemons: &[&Daemon]| {
        let held = leases(daemons);
        let (min, max) = (held.iter().min().copied(), held.iter().max().copied());
        (held.iter().sum::<u32>() == PARTITIONS && max.zip(min).is_some_and(|(max, min)| max - min <= 1))
            .then_some(held)
    };
    let held = wait_for(Duration::from_secs(60), "the partitions balanced over three hosts", || {
        balanced(&[world.daemon(), &second, &third])
    });
    eprintln!("leases held: {held:?}");
    // Each host is ready once it holds its share or finds none left to take.
    wait_for(Duration::from_secs(30), "every host to be ready", || {
        [world.daemon(), &second, &third]
            .iter()
            .all(|daemon| daemon.call("GET", "/readyz", None, None).0 == 200)
            .then_some(())
    });

    // Any host shows the operator the whole cluster.
    let (status, view) = second.call("GET", "/v1/cluster", Some(ADMIN_TOKEN), None);
    assert_eq!(status, 200, "{view}");
    let hosts = view["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{view}");
    assert!(hosts.iter().all(|h| h["alive"] == true), "{view}");
    let held: u64 = hosts.iter().map(|h| h["leases"].as_u64().unwrap()).sum();
    assert_eq!((held, view["leases"].as_array().map(Vec::len)), (u64::from(PARTITIONS), Some(PARTITIONS as usize)));

    // Projects created through one host run on whichever host holds their partition.
    let tenant = world.tenant("acme", "111111111111").await;
    let arn = tenant.aws.stream("events").await;
    let ids: Vec<String> = (0..PROJECTS)
        .map(|_| {
            // Each request says which project's run for which scheduled time fetched it. No
            // state, like passthrough: the hosts share one moto, one request at a time.
            let settings = json!({"stamp_request": "true", "keep_state": "true"});
            let extra = json!({"schedule": "rate(2 seconds)", "plugin_settings": settings});
            let project = world.project(&tenant, "raw-output", "/plain", &arn, extra);
            project["id"].as_str().unwrap().to_string()
        })
        .collect();
    wait_for(Duration::from_secs(60), "every project to have run", || {
        ids.iter().all(|id| !world.runs(&tenant, id).is_empty()).then_some(())
    });

    // A host killed: the others take its leases within two lease periods, and its projects run
    // again there.
    let lost = metric(&second, "sluice_cluster_leases") as u32;
    assert!(lost > 0, "the second host held leases");
    let (_, view) = second.call("GET", "/v1/cluster", Some(ADMIN_TOKEN), None);
    let second_id = view["this_host"].as_str().unwrap().to_string();
    second.kill();
    let killed_at = Instant::now();
    let killed_at_ms = jiff::Timestamp::now().as_millisecond();
    wait_for(Duration::from_secs(30), "the two hosts left to hold every partition", || {
        (leases(&[world.daemon(), &third]).iter().sum::<u32>() == PARTITIONS).then_some(())
    });
    let taken_after = killed_at.elapsed();
    let (_, view) = world.call("GET", "/v1/cluster", ADMIN_TOKEN, None);
    let killed = view["hosts"].as_array().unwrap().iter().find(|h| h["id"] == second_id.as_str()).cloned();
    assert_eq!(killed.map(|h| (h["alive"].clone(), h["leases"].clone())), Some((json!(false), json!(0))), "{view}");
    let since = jiff::Timestamp::now();
    wait_for(Duration::from_secs(30), "every project to run again after the kill", || {
        ids.iter()
            .all(|id| {
                world.runs(&tenant, id).iter().any(|run| {
                    run["started_at"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|t| t > since)
                })
            })
            .then_some(())
    });
    eprintln!(
        "the killed host's {lost} leases were taken {taken_after:?} after the kill (lease period {LEASE_MS} ms); \
         every project ran again {:?} after it",
        killed_at.elapsed()
    );
    assert!(taken_after < Duration::from_millis(2 * LEASE_MS) + Duration::from_secs(3), "{taken_after:?}");
    let fenced: f64 = [world.daemon(), &third].iter().map(|d| metric(d, "sluice_cluster_fenced_runs_total")).sum();
    let losses: Vec<f64> =
        [world.daemon(), &third].iter().map(|d| metric(d, "sluice_cluster_lease_losses_total")).collect();
    eprintln!("runs that lost their lease while they ran: {fenced}; leases lost by the hosts left: {losses:?}");
    assert_each_time_ran_once(&runs_of(&world, &tenant, &ids));
    // At the source: one fetch per project and scheduled time, apart from the runs the killed
    // host had in flight (it fetched, died before recording them, and their scheduled times ran
    // again on the new owner: delivery is at least once) and runs fenced off by a lost lease.
    let fetches = fetches_per_run(&world);
    let twice: Vec<(&(String, i64), &usize)> = fetches.iter().filter(|(_, count)| **count > 1).collect();
    let in_flight = |scheduled_ms: i64| (killed_at_ms - 2 * 2_000 - 1_000..=killed_at_ms).contains(&scheduled_ms);
    eprintln!(
        "fetches at the source: {} runs, {} fetched twice (the killed host's in flight, or fenced: {fenced} fenced runs): \
         {twice:?}",
        fetches.len(),
        twice.len()
    );
    let unexplained: Vec<_> = twice.iter().filter(|((_, ms), _)| !in_flight(*ms)).collect();
    assert!(
        unexplained.len() as f64 <= fenced,
        "scheduled times fetched twice, neither in flight on the killed host nor fenced: {unexplained:?}"
    );
    assert!(twice.iter().all(|(_, count)| **count == 2), "a scheduled time fetched more than twice: {twice:?}");
    let failed: Vec<Value> =
        runs_of(&world, &tenant, &ids).into_values().flatten().filter(|run| run["outcome"] == "failed").collect();
    assert!(failed.is_empty(), "{failed:?}");

    // A host stopped with SIGTERM gives its leases up at once; the last host takes them all.
    let mut third = third;
    assert_eq!(third.terminate(), Some(0), "{}", third.log());
    assert!(third.log().contains("left the cluster"), "{}", third.log());
    wait_for(Duration::from_secs(30), "the last host to hold every partition", || {
        (metric(world.daemon(), "sluice_cluster_leases") as u32 == PARTITIONS).then_some(())
    });
    assert_each_time_ran_once(&runs_of(&world, &tenant, &ids));
}

/// A host stopped with SIGSTOP past its lease and continued: the other host takes its
/// partitions, and the stalled host, on waking, drops them, commits nothing of the runs it had in
/// flight (their fenced writes are refused, or they stop before sending) and runs no project for
/// a scheduled time the other ran too. Every item reaches the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_stalled_past_its_lease_commits_nothing_when_it_wakes() {
    let world = World::start_configured(true, &config(), &[]);
    world.proxy.one_at_a_time();
    let (stalled, _stalled_dir) = host(&world);
    wait_for(Duration::from_secs(60), "the partitions shared by two hosts", || {
        let held = leases(&[world.daemon(), &stalled]);
        (held.iter().sum::<u32>() == PARTITIONS && held.iter().all(|n| *n > 0)).then_some(())
    });
    let tenant = world.tenant("acme", "111111111111").await;
    world.source.add_items(0..20);
    // A slow source keeps runs in flight, so that the stop catches some of them.
    let (ids, streams) = incremental_projects(&world, &tenant, 12, "/items?delay_ms=700").await;

    let pid = stalled.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    wait_for(Duration::from_secs(30), "the running host to take every partition", || {
        (metric(world.daemon(), "sluice_cluster_leases") as u32 == PARTITIONS).then_some(())
    });
    world.source.add_items(20..30);
    std::thread::sleep(Duration::from_secs(3));
    assert!(std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    wait_for(Duration::from_secs(30), "the stalled host to notice it lost its leases", || {
        (metric(&stalled, "sluice_cluster_lease_losses_total") > 0.0).then_some(())
    });
    let fenced = metric(&stalled, "sluice_cluster_fenced_runs_total");
    eprintln!("runs of the stalled host that lost their lease while they ran: {fenced}");
    world.source.add_items(30..40);
    wait_for_every_item(&tenant, &streams, 40);
    assert_each_time_ran_once(&runs_of(&world, &tenant, &ids));
}

/// A rolling restart under load: each of three hosts in turn is stopped with SIGTERM (its leases
/// go to the others at once) and started again (it takes its share back), while items keep
/// arriving. No item is lost, no scheduled time runs twice, and the schedule lag over the roll is
/// reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_host_loses_no_record() {
    let mut world = World::start_configured(true, &config(), &[]);
    world.proxy.one_at_a_time();
    let (second, second_dir) = host(&world);
    let (third, third_dir) = host(&world);
    let mut others = [(second, second_dir), (third, third_dir)];
    let tenant = world.tenant("acme", "111111111111").await;
    world.source.add_items(0..10);
    let (ids, streams) = incremental_projects(&world, &tenant, 9, "/items").await;
    let all_hold = |daemons: &[&Daemon]| leases(daemons).iter().sum::<u32>() == PARTITIONS;
    let rolled_from = jiff::Timestamp::now();
    let env = [
        ("AWS_ENDPOINT_URL", world.proxy.endpoint.clone()),
        ("SLUICE_ALLOW_PRIVATE_SOURCES", "true".to_string()),
        ("SLUICE_PLATFORM_PRINCIPAL_ARN", PLATFORM_PRINCIPAL.to_string()),
    ];
    let mut next_item = 10;
    for turn in 0..3 {
        world.source.add_items(next_item..next_item + 5);
        next_item += 5;
        if turn == 0 {
            let mut first = world.daemon.take().expect("the first host runs");
            assert_eq!(first.terminate(), Some(0), "{}", first.log());
            wait_for(Duration::from_secs(30), "the other two to hold every partition", || {
                all_hold(&[&others[0].0, &others[1].0]).then_some(())
            });
            world.restart_with(&config(), &[]);
        } else {
            let (stopped, still) = (turn - 1, 2 - turn);
            let code = others[stopped].0.terminate();
            assert_eq!(code, Some(0), "{}", others[stopped].0.log());
            wait_for(Duration::from_secs(30), "the other two to hold every partition", || {
                all_hold(&[world.daemon(), &others[still].0]).then_some(())
            });
            others[stopped].0 = Daemon::start_configured(others[stopped].1.path(), &env, &config());
        }
        world.source.add_items(next_item..next_item + 5);
        next_item += 5;
        wait_for(Duration::from_secs(60), "the restarted host to take its share", || {
            let held = leases(&[world.daemon(), &others[0].0, &others[1].0]);
            (held.iter().sum::<u32>() == PARTITIONS && held.iter().all(|n| *n > 0)).then_some(())
        });
    }
    wait_for_every_item(&tenant, &streams, next_item as usize);
    let runs = runs_of(&world, &tenant, &ids);
    assert_each_time_ran_once(&runs);
    let mut lags: Vec<i64> = runs
        .values()
        .flatten()
        // Catch-up runs included: they are the scheduled times a hand-over delayed.
        .filter(|run| run["trigger"] == "schedule" || run["trigger"] == "catch_up")
        .filter_map(|run| {
            let scheduled: jiff::Timestamp = run["scheduled_at"].as_str()?.parse().ok()?;
            let started: jiff::Timestamp = run["started_at"].as_str()?.parse().ok()?;
            (scheduled >= rolled_from).then(|| started.as_millisecond() - scheduled.as_millisecond())
        })
        .collect();
    lags.sort_unstable();
    let p99 = lags.get((lags.len() * 99 / 100).min(lags.len().saturating_sub(1))).copied().unwrap_or_default();
    eprintln!("rolling restart: {} scheduled runs during the roll, schedule lag p99 {p99} ms", lags.len());
    assert!(!lags.is_empty());
}
