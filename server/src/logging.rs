//! The process's log subscriber: `--log-format text|json`, filtered by `RUST_LOG`.
//!
//! Every line logged while a request is handled carries that request's span
//! (`request{request_id=...}`, in JSON the `span` and `spans` objects), see
//! [`crate::http::request_id`].

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber writing to `writer` in `format`, at `default_filter`
/// unless `RUST_LOG` says otherwise. Does nothing if one is installed already.
pub fn init<W>(format: LogFormat, default_filter: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // `span`: the innermost span's fields; `spans`: all of them, outermost first.
        LogFormat::Json => builder.json().try_init(),
    };
}
