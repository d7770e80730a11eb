//! The README's first command: the demo runs to the end, prints what it pulled, restores one
//! object into a second worker, finds it identical, and exits 0.

use std::process::Command;

#[test]
fn the_demo_prints_what_it_pulled_and_exits_0() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new("bash").arg("scripts/demo.sh").current_dir(root).output().expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "the demo failed.\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("demo: 6 objects, 34 keys in "), "{stdout}");
    assert!(stdout.contains("CounterSql alice profile = {\"plan\":\"free\",\"langs\":[\"en\"]}"), "{stdout}");
    assert!(stdout.contains("demo: SQL tables CounterSql.events, CounterSql.order_lines, CounterSql.orders;"), "{stdout}");
    assert!(stdout.contains("  alice  2 orders, 7.50\n  bob    1 orders, 2.50\n"), "{stdout}");
    assert!(stdout.contains("CounterSql \"alice\": restored (keys 6 written, 0 deleted; rows 5 written, 0 deleted)"), "{stdout}");
    assert!(
        stdout.contains("demo: alice in the backup: 17 keys and rows; in durafetch-staging after the restore: 17; identical: True"),
        "{stdout}"
    );
}
