//! The `--html` report of a load run opens in headless Chromium with every chart drawn
//! from data points, and without console errors (the page has no script at all).

use std::path::PathBuf;

use winmdm_load::load::{self, LoadOptions};

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_report_charts_in_headless_chromium() {
    let e = winmdm::embedded::start().await.expect("embedded server");
    let pool = tempfile::tempdir().expect("temp dir");
    let opts = LoadOptions {
        devices: 6,
        concurrency: 3,
        duration: std::time::Duration::from_secs(3),
        time_scale: 14_400.0,
        key_pool_dir: pool.path().to_path_buf(),
        timeline: true,
        ..LoadOptions::default()
    };
    let report = load::run(&e.target, &opts).await.expect("load run");
    e.control.shutdown().await;
    let html = winmdm_load::chart::load_page(&report);
    assert!(!html.contains("<script"), "the page is script-free");
    assert!(!html.contains(" src="), "the page loads no external assets");
    let figures = html.matches(r#"<figure class="chart""#).count();
    // Throughput, errors, memory, and a latency chart per endpoint of the flow.
    assert_eq!(figures, 3 + 6, "{html}");

    let Some(browser) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed (.ci/run installs it): cannot check the charts");
        }
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("load.html");
    std::fs::write(&page, &html).expect("write page");
    let out = tokio::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("chromium finished within 2 minutes")
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.lines().any(|l| l.contains("CONSOLE")),
        "console messages: {stderr}"
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let charts: Vec<&str> = dom.split(r#"<figure class="chart""#).skip(1).collect();
    assert_eq!(charts.len(), figures, "every chart is in the DOM");
    for chart in charts {
        let chart = chart.split("</figure>").next().unwrap_or("");
        assert!(
            chart.contains(r#"class="point""#) && chart.contains("<polyline"),
            "a chart without data points: {chart}"
        );
    }
}
