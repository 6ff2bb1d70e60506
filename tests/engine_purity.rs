//! STYLE 1 / SPEC §5.1: the engine is pure. This test reads every source file of
//! `src/engine/` and fails on anything that reads a clock, sleeps, touches the environment,
//! files, the network or other processes, draws random numbers, or prints.

#[test]
fn engine_sources_use_no_clock_io_environment_or_randomness() {
    let forbidden = [
        "Instant",
        "SystemTime",
        "UNIX_EPOCH",
        "std::time",
        "thread::sleep",
        "std::thread",
        "std::env",
        "env::var",
        "std::fs",
        "File::",
        "std::net",
        "TcpStream",
        "std::process",
        "Command::new",
        "std::io",
        "rand::",
        "getrandom",
        "println!",
        "eprintln!",
        "print!",
        "dbg!",
        "ureq",
    ];
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/engine"));
    let mut checked = 0;
    let mut todo = vec![dir];
    let mut files = Vec::new();
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in forbidden {
                assert!(
                    !code.contains(f),
                    "{}:{}: the engine must stay pure, found `{f}`: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 7,
        "expected the engine's modules, read {checked}"
    );
}
