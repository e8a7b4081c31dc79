//! Every log line of the servers in this test binary, captured so tests can prove no secret is logged.
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Every log line the servers in this test binary wrote, so tests can prove no secret is logged.
pub fn captured_logs() -> String {
    let buffer = log_buffer();
    let bytes = buffer.lock().expect("log buffer").clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub(crate) fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = LogWriter(buffer.clone());
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug")
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .try_init();
            buffer
        })
        .clone()
}

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
