//! Each `palaver bench` scenario, briefly, against the test server: not for speed (nothing here
//! is timed) but to show that the load generator and the server agree — no errors, no gaps, no
//! duplicates, every catch-up complete, every idle socket still there.

use clap::Parser;

use crate::dual_test;
use crate::helpers::TestApp;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: palaver::bench::BenchArgs,
}

async fn run(app: &TestApp, args: &[&str]) -> palaver::bench::Report {
    let mut argv = vec!["bench", "--url", app.base.as_str()];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("bench arguments");
    palaver::bench::measure(&cli.bench)
        .await
        .expect("scenario runs")
}

fn no_trouble(r: &palaver::bench::Report) {
    for key in [
        "errors",
        "gaps",
        "duplicates_or_out_of_order",
        "incomplete",
        "dropped_while_idle",
        "connect_failures",
        "read_errors",
    ] {
        assert_eq!(r.counts.get(key).copied().unwrap_or(0), 0, "{key} in\n{r}");
    }
}

dual_test!(bench_scenarios_run_clean, super::no_limits);
async fn bench_scenarios_run_clean(app: &TestApp) {
    let chat = run(
        app,
        &["chat", "--users", "6", "--window", "4", "--duration", "1"],
    )
    .await;
    no_trouble(&chat);
    assert!(chat.counts["delivered"] > 0, "{chat}");
    assert_eq!(chat.counts["delivered"], chat.counts["acked"], "{chat}");

    let paced = run(
        app,
        &["chat", "--users", "4", "--rate", "40", "--duration", "1"],
    )
    .await;
    no_trouble(&paced);

    let fanout = run(
        app,
        &[
            "fanout",
            "--groups",
            "2",
            "--members",
            "4",
            "--duration",
            "1",
        ],
    )
    .await;
    no_trouble(&fanout);
    assert_eq!(
        fanout.counts["delivered"],
        fanout.counts["acked"] * 3,
        "{fanout}"
    );
    assert!(fanout.latencies.contains_key("send → last member"));

    let catchup = run(
        app,
        &[
            "catchup",
            "--messages",
            "120",
            "--limit",
            "50",
            "--repeat",
            "2",
        ],
    )
    .await;
    no_trouble(&catchup);
    // 120 messages in pages of 50: at least three pages per catch-up (receipt changes made
    // meanwhile may add one); completeness and order are `incomplete` above.
    assert!(catchup.counts["pages"] >= 6, "{catchup}");

    let idle = run(app, &["idle", "--connections", "30", "--duration", "1"]).await;
    no_trouble(&idle);
    assert_eq!(idle.counts["connected"], 30);

    let reads = run(
        app,
        &[
            "reads",
            "--conversations",
            "5",
            "--rate",
            "20",
            "--users",
            "4",
            "--duration",
            "1",
        ],
    )
    .await;
    no_trouble(&reads);
    assert!(reads.latencies.contains_key("GET conversation list"));

    let hooks = run(
        app,
        &[
            "webhooks",
            "--bodies",
            "12",
            "--per-body",
            "5",
            "--concurrency",
            "4",
            "--customers",
            "7",
        ],
    )
    .await;
    assert_eq!(hooks.counts["webhook errors"], 0, "{hooks}");
    assert_eq!(hooks.counts["messages stored"], 60, "{hooks}");

    let inbox = run(
        app,
        &[
            "inbox",
            "--conversations",
            "30",
            "--agents",
            "3",
            "--rows",
            "1500",
            "--requests",
            "3",
        ],
    )
    .await;
    assert_eq!(
        inbox.counts["open conversations (counts.open)"], 30,
        "{inbox}"
    );
    assert_eq!(inbox.counts["rows imported"], 1500, "{inbox}");
    assert!(inbox.latencies.contains_key("view: mine"), "{inbox}");

    let ai = run(
        app,
        &["ai-idle", "--conversations", "30", "--duration", "2"],
    )
    .await;
    assert_eq!(ai.counts["runs queued while waiting"], 0, "{ai}");
    assert!(ai.counts["scans while waiting"] >= 1, "{ai}");
    assert_eq!(ai.counts["conversations analysed once due"], 30, "{ai}");

    let campaign = run(app, &["campaign", "--recipients", "40", "--rate", "20"]).await;
    assert_eq!(campaign.counts["leads reached"], 40, "{campaign}");
    assert_eq!(campaign.counts["leads reached twice"], 0, "{campaign}");

    let url = app.state.config.database_url.expose().to_owned();
    let analytics = run(
        app,
        &[
            "analytics",
            "--messages",
            "400",
            "--conversations",
            "20",
            "--agents",
            "3",
            "--days",
            "10",
            "--requests",
            "2",
            "--database-url",
            &url,
        ],
    )
    .await;
    let counts = &analytics.counts;
    assert!(counts["messages written"] > 100, "{analytics}");
    assert_eq!(
        counts["overview: messages in"] + counts["overview: messages out"],
        counts["messages written"],
        "{analytics}"
    );
    assert_eq!(
        counts["overview: first responses"], counts["first responses written"],
        "{analytics}"
    );
}

pub fn no_limits(s: &mut palaver::config::Settings) {
    s.rate_limits = Some(palaver::config::OnOff::Off);
    s.workspaces = Some(palaver::config::WorkspaceCreation::Open);
    s.ai_idle_scan = Some(1);
}
