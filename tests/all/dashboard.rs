//! The web dashboard in a real headless Chromium, driven over WebDriver (chromedriver):
//! a tenant submits a job through the form, watches it run on its graph, takes a
//! savepoint and cancels it, and sees only its own jobs.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use eddy_testkit::plugins::PLUGIN_DIR;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::cluster::{Cluster, job};
use crate::support::{ChildGuard, Scratch};

/// How long the page may take to show what a step waits for.
const BOUND: Duration = Duration::from_secs(60);

/// Starts chromedriver on a free port; returns it and its URL.
fn chromedriver(dir: &Path) -> (ChildGuard, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = std::fs::File::create(dir.join("chromedriver.log")).expect("log");
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(log)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver (apt install chromium-driver; .ci/setup does)");
    let guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (guard, format!("http://127.0.0.1:{port}"))
}

/// A headless Chromium session.
async fn browser(webdriver: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--window-size=1400,1100"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a WebDriver session")
}

/// Waits until `check` gives a value, within [`BOUND`].
async fn until<T, F>(what: &str, mut check: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "the page never showed {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element `css` finds, if any.
async fn text(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Enters `token` in the page's token field.
async fn sign_in(c: &Client, token: &str) {
    let field = c.find(Locator::Css("#token")).await.expect("token field");
    field.clear().await.expect("clear");
    field.send_keys(token).await.expect("type the token");
    c.find(Locator::Css("#token-save"))
        .await
        .expect("save button")
        .click()
        .await
        .expect("save");
}

/// The ids of the jobs the job list shows.
async fn listed(c: &Client, rest: &str) -> Vec<String> {
    c.goto(&format!("{rest}/#/jobs")).await.expect("jobs page");
    until("the job list", || async {
        c.find(Locator::Css("#jobs")).await.ok()
    })
    .await;
    // One poll of the list after it appeared.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut ids = Vec::new();
    for row in c
        .find_all(Locator::Css("#jobs tr[data-job]"))
        .await
        .expect("rows")
    {
        ids.push(
            row.attr("data-job")
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
        );
    }
    ids
}

#[test]
fn the_dashboard_submits_a_job_shows_it_running_takes_a_savepoint_and_cancels_it() {
    let scratch = Scratch::new("dashboard");
    let dir = &scratch.0;
    let hash = |t: &str| eddy_core::sha256(t.as_bytes());
    std::fs::write(
        dir.join("tenants.yaml"),
        format!(
            "admin-tokens: [{}]\ntenants:\n  acme:\n    tokens: [{}]\n  beta:\n    tokens: [{}]\n",
            hash("admin-token"),
            hash("acme-token"),
            hash("beta-token")
        ),
    )
    .expect("tenants");
    let mut cluster = Cluster::start_with(dir, &["--tenants", "tenants.yaml"]);
    cluster.worker("w1", 4);
    // A job of beta's, submitted from the command line by the administrator.
    cluster.token = Some("admin-token".into());
    let beta = job(dir, Some(200), false)
        .replace("name: cluster", "name: beta-orders\ntenant: beta")
        .replace("out.jsonl", "beta.jsonl");
    let beta = cluster.submit_text("beta", &beta);
    // Acme's job, checkpointed and slow, submitted through the form with its
    // components.
    let acme = job(dir, Some(500), true).replace("name: cluster", "name: acme-orders");
    std::fs::write(dir.join("acme.yaml"), acme).expect("job");
    let (_driver, webdriver) = chromedriver(dir);
    let rest = cluster.rest.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let c = browser(&webdriver).await;
        c.goto(&format!("{rest}/#/submit"))
            .await
            .expect("submit page");
        sign_in(&c, "acme-token").await;
        let form = until("the submit form", || async {
            c.find(Locator::Css("form#submit")).await.ok()
        })
        .await;
        let path = |p: &Path| p.to_str().expect("path").to_owned();
        form.find(Locator::Css("input[name=job]"))
            .await
            .expect("job input")
            .send_keys(&path(&dir.join("acme.yaml")))
            .await
            .expect("choose the job file");
        let components = ["currency_convert.wasm", "order_summary.wasm"]
            .map(|c| path(&Path::new(PLUGIN_DIR).join(c)))
            .join("\n");
        form.find(Locator::Css("input[name=component]"))
            .await
            .expect("component input")
            .send_keys(&components)
            .await
            .expect("choose the components");
        form.find(Locator::Css("button[type=submit]"))
            .await
            .expect("submit button")
            .click()
            .await
            .expect("submit");
        let link = until("the submitted job", || async {
            let link = c.find(Locator::Css("#submit-result a")).await.ok()?;
            link.attr("href").await.ok().flatten()
        })
        .await;
        let id = link.rsplit('/').next().expect("an id").to_owned();

        // The job page: running, records flowing through the graph.
        c.goto(&format!("{rest}/#/jobs/{id}"))
            .await
            .expect("job page");
        until("the job running", || async {
            text(&c, "#job-state")
                .await
                .filter(|s| s.contains("running"))
        })
        .await;
        let vertex = "g.vertex[data-name=\"to-eur\"]";
        until("records per second above zero", || async {
            let rate = c
                .find(Locator::Css(vertex))
                .await
                .ok()?
                .attr("data-rate")
                .await
                .ok()??;
            rate.parse::<f64>().ok().filter(|r| *r > 0.0)
        })
        .await;

        // A savepoint, listed once completed.
        c.find(Locator::Css("#savepoint"))
            .await
            .expect("savepoint button")
            .click()
            .await
            .expect("trigger a savepoint");
        until("the savepoint completed", || async {
            text(&c, "#savepoints tr[data-trigger] td.state")
                .await
                .filter(|s| s == "completed")
        })
        .await;
        until("a completed checkpoint", || async {
            text(&c, "#checkpoints")
                .await
                .filter(|s| s.contains("completed"))
        })
        .await;
        let shot = c.screenshot().await.expect("a screenshot");
        let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-job.png");
        std::fs::write(&artifact, shot).expect("save the screenshot");

        // Cancelled from the page.
        c.find(Locator::Css("#cancel"))
            .await
            .expect("cancel button")
            .click()
            .await
            .expect("cancel");
        until("the job cancelled", || async {
            text(&c, "#job-state")
                .await
                .filter(|s| s.contains("cancelled"))
        })
        .await;

        // Each tenant's token shows its own jobs only.
        assert_eq!(listed(&c, &rest).await, std::slice::from_ref(&id));
        sign_in(&c, "beta-token").await;
        assert_eq!(listed(&c, &rest).await, [beta.to_string()]);
        // Acme's job page answers beta as if there were no such job.
        c.goto(&format!("{rest}/#/jobs/{id}"))
            .await
            .expect("job page");
        until("no such job", || async {
            let page = text(&c, "body").await?;
            page.contains(&format!("no job {id}")).then_some(())
        })
        .await;
        c.close().await.expect("close the browser");
    });
    let acme = cluster.wait_for(id_of(&cluster, "acme-orders"), "cancelled", BOUND);
    assert_eq!(acme["tenant"], "acme", "{acme}");
}

/// The id of the job named `name`.
fn id_of(cluster: &Cluster, name: &str) -> u64 {
    let out = cluster.client(&["list", "--json"]);
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("the job list");
    jobs.iter()
        .find(|j| j["name"] == name)
        .and_then(|j| j["id"].as_u64())
        .expect("the job is listed")
}
