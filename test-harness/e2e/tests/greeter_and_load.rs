//! The greeter server and load client against each other, without Envoy:
//! real `greeter-server` processes, called directly by the load library.
//!
//! Ports 50061..=50064 are used here only; the Envoy scenarios own
//! 50051..=50053, 9901 and 10000.

use std::time::Duration;

use e2e::{greeter_server, Greeter, GreeterProcess};
use loadgen::closed::{run_load, run_load_observed, LoadSpec};

fn load_at(greeter: &GreeterProcess, count: u64) -> LoadSpec {
    LoadSpec {
        count,
        concurrency: 4,
        name: "e2e".to_owned(),
        ..LoadSpec::new(greeter.uri())
    }
}

#[tokio::test]
async fn delayed_greeter_signs_every_reply_and_its_delay_shows_in_p50() {
    let slow = Greeter::on(50061)
        .delay(Duration::from_millis(20))
        .spawn(greeter_server())
        .unwrap();

    let mut greetings = Vec::new();
    let report = run_load_observed(&load_at(&slow, 40), |outcome| {
        greetings.push(outcome.result.clone());
    })
    .await
    .unwrap();

    let expected = "Hello e2e (Backend: 127.0.0.1:50061)";
    assert_eq!(greetings.len(), 40);
    for greeting in &greetings {
        assert_eq!(greeting.as_deref().ok(), Some(expected), "{greeting:?}");
    }
    assert_eq!((report.total(), report.ok(), report.failed()), (40, 40, 0));
    assert_eq!(report.per_backend().len(), 1, "{:?}", report.per_backend());
    assert_eq!(report.served_by(&slow.backend()), 40);
    assert!(
        report.p50() >= Duration::from_millis(20),
        "p50 {:?}",
        report.p50()
    );
    assert!(
        report.p50() < Duration::from_millis(250),
        "p50 {:?}",
        report.p50()
    );
}

#[tokio::test]
async fn always_failing_greeter_is_counted_as_unavailable() {
    let failing = Greeter::on(50062)
        .fail_rate(1.0)
        .spawn(greeter_server())
        .unwrap();

    let report = run_load(&load_at(&failing, 25)).await.unwrap();

    assert_eq!((report.total(), report.ok(), report.failed()), (25, 0, 25));
    assert_eq!(report.failures_with("UNAVAILABLE"), 25);
    assert_eq!(report.failures_by_code().len(), 1);
    assert!(report.per_backend().is_empty());

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["failures_by_code"]["UNAVAILABLE"], 25);
    assert_eq!(json["failed"], 25);
}

#[tokio::test]
async fn killed_greeter_comes_back_on_the_same_port_with_new_behaviour() {
    let mut greeter = Greeter::on(50063).spawn(greeter_server()).unwrap();
    let spec = load_at(&greeter, 5);
    assert_eq!(
        run_load(&spec).await.unwrap().served_by(&greeter.backend()),
        5
    );

    greeter.kill();
    assert!(!greeter.is_running());
    assert!(
        run_load(&spec).await.is_err(),
        "a killed greeter must refuse connections"
    );

    greeter.restart_with(Greeter::hang).unwrap();
    let report = run_load(&LoadSpec {
        timeout: Duration::from_millis(200),
        ..spec.clone()
    })
    .await
    .unwrap();
    assert_eq!(report.failures_with("DEADLINE_EXCEEDED"), 5);

    greeter
        .restart_with(|g| g.fail_rate(1.0).fail_code("resource_exhausted"))
        .unwrap();
    let report = run_load(&spec).await.unwrap();
    assert_eq!(report.failures_with("RESOURCE_EXHAUSTED"), 5);
    assert!(greeter
        .log_contents()
        .contains("greeter-server listening on 127.0.0.1:50063"));
}

#[test]
fn greeter_refuses_a_port_that_is_already_taken() {
    let _first = Greeter::on(50064).spawn(greeter_server()).unwrap();
    let error = Greeter::on(50064).spawn(greeter_server()).unwrap_err();
    assert!(error.contains("already listens"), "{error}");
}
