//! Progress bars, counted nouns and log lines shared by the commands.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items labelled `what`, with elapsed time and ETA.
pub fn bar(len: usize, what: &str) -> ProgressBar {
    labelled(styled(len, "{msg} [{bar:30}] {pos}/{len} {elapsed_precise} (eta {eta})"), what)
}

/// A bar in percent for work counted in uneven units (kernel launches), labelled `what`.
pub fn percent_bar(what: &str) -> ProgressBar {
    labelled(styled(1, "{msg} [{bar:30}] {percent:>3}% {elapsed_precise} (eta {eta})"), what)
}

/// A bar over `len` items drawn with indicatif's `template` (a literal, so valid).
pub fn styled(len: usize, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    bar
}

fn labelled(bar: ProgressBar, what: &str) -> ProgressBar {
    bar.set_message(what.to_string());
    bar
}

/// "1 image", "5 images".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `eprintln!` that ignores a stderr that cannot be written (its reader gone), for what
/// must go on regardless: phase 2 saving its state after Ctrl-C, say, when Ctrl-C also
/// ended the `tee` that read the log.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
