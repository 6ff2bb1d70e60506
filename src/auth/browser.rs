//! Starting a browser on a sign-in URL when one is available (the login flows of SPEC §6.3),
//! never failing when there is none: the URL is printed either way.
//!
//! Owns: choosing the program (`BROWSER`, `open`, `xdg-open`). Must not: wait for the browser
//! or report its failures as errors.

/// Opens `url` in a browser when one is available: `BROWSER` (the first of a `:`-separated
/// list; `%s` stands for the URL), else `open` on macOS, else `xdg-open` when a display is set.
/// Returns what was started; `None` (nothing available, or it failed) is never an error: the
/// URL is printed either way.
pub fn open_browser(url: &str) -> Option<String> {
    let from_env = std::env::var("BROWSER")
        .ok()
        .and_then(|b| b.split(':').next().map(str::trim).map(str::to_string))
        .filter(|b| !b.is_empty());
    let command = match from_env {
        Some(b) => b,
        None if cfg!(target_os = "macos") => "open".to_string(),
        None if cfg!(unix)
            && (std::env::var_os("DISPLAY").is_some()
                || std::env::var_os("WAYLAND_DISPLAY").is_some()) =>
        {
            "xdg-open".to_string()
        }
        None => return None,
    };
    let mut words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    if words.iter().any(|w| w.contains("%s")) {
        for w in &mut words {
            *w = w.replace("%s", url);
        }
    } else {
        words.push(url.to_string());
    }
    let (program, args) = words.split_first()?;
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // Reaped in the background so no zombie is left while the login waits.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Some(program.clone())
}
