//! Every committed fuzz input — the seeds and every input that once crashed a target — replays
//! through the harness its target calls (STYLE 14), so a fixed crash stays fixed.

use std::path::Path;

type Harness = fn(&[u8]);

const TARGETS: [(&str, Harness); 5] = [
    ("profile", llxprt::fuzzing::profile),
    ("trace", llxprt::fuzzing::trace),
    ("sse", llxprt::fuzzing::sse),
    ("bodies", llxprt::fuzzing::bodies),
    ("decide", llxprt::fuzzing::decide),
];

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn committed_fuzz_inputs_replay_without_a_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (name, harness) in TARGETS {
        for kind in ["seeds", "regressions"] {
            for file in inputs(&root.join(kind).join(name)) {
                let bytes = std::fs::read(&file).unwrap();
                harness(&bytes);
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= 40,
        "expected the committed seeds, replayed {replayed}"
    );
}
