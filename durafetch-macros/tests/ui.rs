//! Every misuse of `#[durafetch]` gives a spanned, readable compile error (`ui/*.stderr`), and
//! correct uses compile.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/pass/*.rs");
}
