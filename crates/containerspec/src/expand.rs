//! `$(VAR)` expansion in env values, command and args, with kubelet's exact rules
//! (k8s.io/kubernetes third_party/forked/golang/expansion): `$$` escapes a `$`, a reference
//! to an undefined variable stays as written, and an unterminated `$(` is kept literally.

/// What follows a `$` in the input.
enum Reference<'a> {
    /// `$$`: one literal `$`.
    Escape,
    /// `$(name)`, `consumed` bytes after the `$`.
    Var { name: &'a str, consumed: usize },
    /// Anything else: the `$` and the next `consumed` bytes are literal.
    Literal { consumed: usize },
}

/// Expands `$(NAME)` references in `input` with `lookup`; undefined names stay `$(NAME)`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    // `checkpoint` marks the start of literal text not yet copied, so multi-byte UTF-8 is
    // always copied as whole slices.
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] != b'$' || cursor + 1 >= bytes.len() {
            cursor += 1;
            continue;
        }
        out.push_str(&input[checkpoint..cursor]);
        let rest = &input[cursor + 1..];
        let consumed = match read_reference(rest) {
            Reference::Escape => {
                out.push('$');
                1
            }
            Reference::Var { name, consumed } => {
                match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push_str("$(");
                        out.push_str(name);
                        out.push(')');
                    }
                }
                consumed
            }
            Reference::Literal { consumed } => {
                out.push('$');
                out.push_str(&rest[..consumed]);
                consumed
            }
        };
        cursor += 1 + consumed;
        checkpoint = cursor;
    }
    out.push_str(&input[checkpoint..]);
    out
}

fn read_reference(rest: &str) -> Reference<'_> {
    match rest.as_bytes().first() {
        Some(b'$') => Reference::Escape,
        Some(b'(') => match rest[1..].find(')') {
            Some(end) => Reference::Var {
                name: &rest[1..end + 1],
                consumed: end + 2,
            },
            // Unterminated: kubelet emits `$(` and scans on from the byte after the `(`.
            None => Reference::Literal { consumed: 1 },
        },
        // `$` before any other character is literal; keep that whole (UTF-8) character.
        _ => Reference::Literal {
            consumed: rest.chars().next().map_or(0, char::len_utf8),
        },
    }
}

/// A lookup over an ordered list of variables where later entries win (as env lists do).
pub fn lookup_in(vars: &[(String, String)]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_EMPTY", ""),
            ("UTF", "ü"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Cases from the Kubernetes docs and kubelet's expansion test table.
    #[test]
    fn kubelet_expansion_table() {
        let vars = vars();
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("$(VAR_EMPTY)", ""),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("foo$$bar", "foo$bar"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(VAR_A)$(", "A$("),
            ("$VAR_A", "$VAR_A"),
            ("$", "$"),
            ("foo$", "foo$"),
            ("$()", "$()"),
            ("$(VAR_A)ü$ü", "Aü$ü"),
            ("$(UTF)", "ü"),
            ("no refs at all", "no refs at all"),
            ("$(VAR_A)$$", "A$"),
            ("$$$$", "$$"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, lookup_in(&vars)), want, "input {input:?}");
        }
    }

    #[test]
    fn later_definitions_win() {
        let vars = vec![
            ("X".to_string(), "1".to_string()),
            ("X".to_string(), "2".to_string()),
        ];
        assert_eq!(expand("$(X)", lookup_in(&vars)), "2");
    }
}
