//! Log setup shared by every binary: `RUST_LOG` filtering (default `info`), stderr, text
//! with colour only on a terminal, or one JSON object per line for log pipelines and tests.

/// Installs the global subscriber; `format` is `"text"` or `"json"`.
pub fn init(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
