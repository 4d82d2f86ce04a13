//! The admin credential `peapod up` writes into its kubeconfig: the check of its token
//! (constant-time) and the user it authenticates as, shared by request authentication and
//! TokenReview.

use rbac::User;

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
pub fn token_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin's user: `system:masters`.
pub fn user() -> User {
    User {
        name: "admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        ..User::default()
    }
}
