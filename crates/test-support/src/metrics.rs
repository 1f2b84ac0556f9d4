//! Reading a Prometheus `/metrics` text in tests.

/// The value of the one sample whose name and labels are exactly `series` (as exposed, e.g.
/// `switchboard_webhooks_total{listener="1",result="answered"}`); `None` when there is none.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_sample_is_found_by_its_exact_series() {
    let text = "# TYPE a counter\na_total{x=\"1\"} 3\na_total{x=\"10\"} 5\nb 1.5\n";
    assert_eq!(metric(text, "a_total{x=\"1\"}"), Some(3.0));
    assert_eq!(metric(text, "a_total{x=\"10\"}"), Some(5.0));
    assert_eq!(metric(text, "b"), Some(1.5));
    assert_eq!(metric(text, "a_total"), None);
}
