//! Log setup shared by every binary: `RUST_LOG` filtering (default `info`), stderr, text
//! with colour only on a terminal, or one JSON object per line for log pipelines and tests.

/// Installs the global subscriber; `format` is `"text"` or `"json"`.
pub fn init(format: &str) {
    init_with(format, None);
}

/// A layer added beside the formatter (e.g. shipping to CloudWatch Logs).
pub type ExtraLayer =
    Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Like [`init`], with one more layer that sees every event the filter lets through.
pub fn init_with(format: &str, extra: Option<ExtraLayer>) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(extra);
    let fmt = if format == "json" {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed()
    };
    registry.with(fmt).with(filter).init();
}
