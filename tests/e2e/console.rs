//! The console at `/console`, in real headless Chromium against the real daemon on moto: a tenant
//! signs in with its key, sees its project `pending` with the stack update to run, sees a run
//! fail at AssumeRole, runs it again once trusted and sees it `active` with its records; another
//! tenant typing that project's id sees "not found"; the operator creates a tenant and disables
//! the first one, whose open page then shows the refusal. The test saves the screenshots shown
//! in the README.

use std::time::Duration;

use serde_json::json;
use sluice_tests::fault_proxy::Fault;
use sluice_tests::world::World;
use sluice_tests::{ADMIN_TOKEN, Browser, PLATFORM_PRINCIPAL, http_text, register_secret, root};

/// The console polls every 2 to 3 s; a page shows a change within a few polls, also on a machine
/// busy with the rest of the suite.
const SHOWN: Duration = Duration::from_secs(30);
/// A run assumes a role on moto, fetches, transforms and delivers: seconds, on a busy machine more.
const RUN: Duration = Duration::from_secs(60);

fn sign_in(browser: &Browser, console: &str, token: &str) {
    browser.goto(console);
    browser.type_into("#token", token);
    browser.click("#sign-in");
}

/// Where a screenshot goes: `docs/`, where the README shows it from, with
/// `SLUICE_UPDATE_SCREENSHOTS=1`; otherwise beside the build, so that a test run leaves the
/// committed pictures alone (each run's ids and times differ).
fn screenshot(name: &str) -> std::path::PathBuf {
    match std::env::var_os("SLUICE_UPDATE_SCREENSHOTS") {
        Some(_) => root().join("docs").join(name),
        None => root().join("target/screenshots").join(name),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_the_operator_see_and_act_through_the_console() {
    let world = World::start();
    let tenant = world.tenant("acme-weather", "121212121212").await;
    let stranger = world.tenant("globex", "131313131313").await;
    let stream = tenant.aws.stream("console-records").await;
    // A schedule that does not fire during the test (Thursdays, 00:00 UTC): the project stays
    // pending until the tenant runs it.
    let project = world.project(
        &tenant,
        "incremental",
        "/items",
        &stream,
        json!({"name": "weather-berlin", "schedule": "rate(7 days)"}),
    );
    let id = project["id"].as_str().unwrap().to_string();
    let external_id = project["onboarding"]["external_id"].as_str().unwrap().to_string();
    world.source.add_items(0..5);
    let console = format!("http://{}/console", world.daemon().addr);

    // 1. The tenant pastes its key and sees the project pending in its list.
    let browser = Browser::start();
    sign_in(&browser, &console, &tenant.key);
    let row = browser.wait_text(&format!("tr[data-project='{id}']"), "pending", SHOWN);
    assert!(row.contains("weather-berlin") && row.contains("rate(7 days)"), "{row}");
    browser.wait_text("#usage", "1 of 10000", SHOWN);
    assert_eq!(browser.text("#login"), Some(String::new()), "the sign-in form is hidden once signed in");

    // 2. Its page has the onboarding panel with the stack update to copy.
    browser.click(&format!("tr[data-project='{id}'] a"));
    let command = browser.wait_text("#onboarding-command", "aws cloudformation update-stack", SHOWN);
    for part in [
        "--stack-name 'sluice-tenant'",
        &format!("ParameterKey=PlatformPrincipalArn,ParameterValue={PLATFORM_PRINCIPAL}"),
        &format!("ParameterKey=ExternalId,ParameterValue={external_id}"),
        "ParameterKey=StreamName,UsePreviousValue=true",
    ] {
        assert!(command.contains(part), "the command has {part}:\n{command}");
    }
    assert_eq!(browser.text("#onboarding-principal").as_deref(), Some(PLATFORM_PRINCIPAL));
    assert_eq!(browser.text("#onboarding-external-id"), Some(external_id.clone()));
    browser.type_into("#stack-name", "-prod");
    browser.wait_text("#onboarding-command", "--stack-name 'sluice-tenant-prod'", SHOWN);
    browser.wait_text("#runs", "No runs yet", SHOWN);

    // A run before the stack trusts the platform fails at AssumeRole: the page says where and
    // why, and the project stays pending with its panel.
    world.proxy.inject("AssumeRole", Fault::AccessDenied, 1);
    browser.click("#action-run");
    let failed = browser.wait_text("#run-table tbody tr", "assume_role", RUN);
    assert!(failed.contains("failed"), "{failed}");
    browser.wait_text("#project-head h1", "pending", SHOWN);
    browser.wait_text("#onboarding-title", "Finish onboarding", SHOWN);

    // 3. With the role trusted (moto's roles trust anyone), a run from the console's button
    //    assumes it: the project turns active, the panel goes, and the runs show the records.
    browser.click("#action-run");
    browser.wait_text("#runs-summary", "5 records delivered", RUN);
    browser.wait_text("#project-head h1", "active", SHOWN);
    assert_eq!(browser.text("#onboarding-title"), None, "no onboarding panel once active");
    let run = browser.wait_text("#run-table tbody tr", "succeeded", SHOWN);
    assert!(run.contains("manual"), "{run}");
    assert_eq!(world.show(&tenant, &id)["status"], "active");
    assert_eq!(tenant.aws.read(&stream).await.len(), 5, "the records are in the tenant's stream");
    browser.resize(1280, 1100);
    browser.wait_text("#runs-summary", "records delivered", SHOWN);
    browser.screenshot(&screenshot("console-tenant.png"));
    // The token stays out of the URL, and no cookie is set.
    assert!(!browser.url().contains(&tenant.key), "{}", browser.url());
    assert_eq!(browser.execute("return document.cookie"), json!(""));

    // At phone width nothing is wider than the screen.
    browser.resize(390, 844);
    browser.wait_text("#runs-summary", "records delivered", SHOWN);
    let overflow = browser.execute("return document.documentElement.scrollWidth - window.innerWidth");
    assert!(overflow.as_i64().is_some_and(|px| px <= 0), "the page is {overflow} px wider than a phone");
    browser.resize(1280, 900);

    // Pause and resume from the page: resuming waits for the role again, as the API documents.
    browser.click("#action-pause");
    browser.wait_text("#project-head h1", "paused", SHOWN);
    assert_eq!(world.show(&tenant, &id)["status"], "paused");
    browser.click("#action-resume");
    browser.wait_text("#project-head h1", "pending", SHOWN);
    assert_eq!(world.show(&tenant, &id)["status"], "pending");

    // 4. Another tenant typing the project's id sees "not found", exactly as for an absent id.
    let other = Browser::start();
    sign_in(&other, &console, &stranger.key);
    other.wait_text("#projects", "No projects yet", SHOWN);
    for unknown in [id.as_str(), "prj_1111111111111111"] {
        other.goto(&format!("{console}#/projects/{unknown}"));
        other.wait_text("#not-found", "Project not found", SHOWN);
        assert!(!other.text("body").unwrap().contains("weather-berlin"), "nothing of the owner's project shows");
    }
    drop(other);

    // 5. The operator creates a tenant, then disables the first one.
    let operator = Browser::start();
    sign_in(&operator, &console, ADMIN_TOKEN);
    operator.wait_text("#fleet", "Tenants", SHOWN);
    operator.wait_text(&format!("tr[data-tenant='{}']", tenant.id), "active", SHOWN);
    operator.type_into("#tenant-name", "initech");
    operator.click("#create-tenant button[type=submit]");
    let issued = operator.wait_text("#new-key", "slk_", SHOWN);
    register_secret(&issued);
    operator.wait_text("#tenants", "initech", SHOWN);
    // Opened again, the page has forgotten the key: it was shown once.
    operator.goto(&console);
    operator.wait_text("#tenants", "initech", SHOWN);
    assert_eq!(operator.text("#new-key"), None, "the key is not shown again");
    operator.click(&format!("tr[data-tenant='{}'] button.toggle", tenant.id));
    operator.wait_text(&format!("tr[data-tenant='{}']", tenant.id), "disabled", SHOWN);
    let (_, shown) = world.call("GET", &format!("/v1/tenants/{}", tenant.id), ADMIN_TOKEN, None);
    assert_eq!(shown["status"], "disabled", "{shown}");
    operator.wait_text("#fleet", "3 (2 active)", SHOWN);
    operator.resize(1280, 1000);
    operator.wait_text("#fleet", "3 (2 active)", SHOWN);
    operator.screenshot(&screenshot("console-operator.png"));

    // The tenant's open page shows the refusal at its next poll, in the API's words.
    let refusal = browser.wait_text("#alert", "this tenant is disabled", SHOWN);
    assert!(refusal.contains("ask the operator"), "{refusal}");
    drop(browser);
    drop(operator);

    // The console is the same static page for everyone, with nothing of anyone in it.
    let (status, page) = http_text(world.daemon().addr, "/console");
    assert_eq!(status, 200);
    for secret in [tenant.key.as_str(), stranger.key.as_str(), issued.as_str(), ADMIN_TOKEN] {
        assert!(!page.contains(secret), "the console's page holds a token");
    }
}
