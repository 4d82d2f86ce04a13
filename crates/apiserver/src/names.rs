//! Names the server makes up: the random suffix of `generateName` and of generated volume
//! names, kept apart so the registry and the admission plugins share it without using each
//! other.

/// Five characters from kube-apiserver's `generateName` alphabet (no vowels, no confusable
/// digits).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
