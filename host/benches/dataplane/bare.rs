//! The baseline: a bare GET + PutRecords loop, no scheduler, plugin or outbox.

use super::*;

pub async fn bare_side(settings: BareSettings) -> Value {
    let BareSettings { concurrency, rate, warmup, window, perf } = settings;
    let source_url = format!("http://{}/items", peer_addr());

    let http = reqwest::Client::new();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let polls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tokens, receiver) = tokio::sync::mpsc::channel::<()>(concurrency * 4);
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (http, kinesis, url) = (http.clone(), kinesis.clone(), source_url.clone());
        let (polls, errors, stop, receiver) = (polls.clone(), errors.clone(), stop.clone(), receiver.clone());
        workers.spawn(async move {
            let partition_key = format!("bare-{worker}");
            while !stop.load(Ordering::Relaxed) {
                if rate > 0 && receiver.lock().await.recv().await.is_none() {
                    break;
                }
                let body = match http.get(&url).send().await {
                    Ok(response) => response.bytes().await,
                    Err(e) => Err(e),
                };
                let Ok(body) = body else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .data(aws_sdk_kinesis::primitives::Blob::new(body.to_vec()))
                    .partition_key(&partition_key)
                    .build()
                    .unwrap();
                let put = kinesis.put_records().stream_arn(STREAM_ARN).records(entry).send().await;
                match put {
                    Ok(output) if output.failed_record_count() == Some(0) => {
                        polls.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    let pacer = (rate > 0).then(|| {
        let stop = stop.clone();
        tokio::spawn(async move {
            // A token every 1/rate s, in 1 ms steps; tokens the workers cannot take are dropped.
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let (started, mut sent) = (Instant::now(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due {
                    let _ = tokens.try_send(());
                    sent += 1;
                }
            }
        })
    });

    tokio::time::sleep(warmup).await;
    let (polls_before, errors_before) = (polls.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let perf = start_perf(perf.as_deref(), &format!("bare-{rate}"), window.as_secs_f64());
    let start = Sample::now();
    tokio::time::sleep(window).await;
    let end = Sample::now();
    let (polls_after, errors_after) = (polls.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let rss = rss_bytes();
    if let Some(mut perf) = perf {
        let _ = perf.wait();
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(pacer) = pacer {
        pacer.abort();
    }
    workers.abort_all();

    let mut report = window_report(start, end, polls_after - polls_before);
    let extra = json!({
        "side": "bare",
        "concurrency": concurrency,
        "offered_per_s": rate,
        "errors": errors_after - errors_before,
        "rss_end_mib": rss as f64 / 1048576.0,
    });
    report.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    report
}
