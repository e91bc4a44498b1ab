//! `hoist exec` ends in words of its own (issue 23, item 19): it changes
//! no release, so a failed command is not "hosts not where they should be".

use crate::support::fleet::Fleet;
use crate::support::project::printed;

#[test]
fn a_failed_exec_ends_in_its_own_words() {
    let f = Fleet::local(1).write();
    let out = f.hoist(&["exec", "--", "exit 3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let shown = printed(&out);
    assert!(
        shown.contains("exit 1: the command failed on some hosts"),
        "{shown}"
    );
    assert!(!shown.contains("not all where they should be"), "{shown}");
}
