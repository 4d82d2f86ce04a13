//! `$(VAR)` expansion in env values, command and args, with kubelet's exact rules
//! (k8s.io/kubernetes third_party/forked/golang/expansion): `$$` escapes a `$`, a reference
//! to an undefined variable stays as written, and an unterminated `$(` is kept literally.
//! One pass, no recursion; a value chained through many variables (`B=$(A)$(A)`,
//! `C=$(B)$(B)` …) would double at each step, so a result never grows past what Linux can
//! exec (`MAX_ARG_STRLEN`): a reference whose value would not fit stays as written.

/// Linux's limit on one argv or environment string (32 pages): nothing longer can be run.
pub const MAX_EXPANDED: usize = 128 * 1024;

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
    // Past the last `)` no `$(` can close: knowing it keeps `$($($(…` linear, not quadratic.
    let last_close = input.rfind(')');
    while cursor < bytes.len() {
        if bytes[cursor] != b'$' || cursor + 1 >= bytes.len() {
            cursor += 1;
            continue;
        }
        out.push_str(&input[checkpoint..cursor]);
        let rest = &input[cursor + 1..];
        let closable = last_close.is_some_and(|c| c > cursor);
        let consumed = match read_reference(rest, closable) {
            Reference::Escape => {
                out.push('$');
                1
            }
            Reference::Var { name, consumed } => {
                match lookup(name) {
                    Some(value) if out.len() + value.len() <= MAX_EXPANDED => out.push_str(&value),
                    _ => {
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

fn read_reference(rest: &str, closable: bool) -> Reference<'_> {
    match rest.as_bytes().first() {
        Some(b'$') => Reference::Escape,
        Some(b'(') => match closable.then(|| rest[1..].find(')')).flatten() {
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

    /// Each variable doubling the previous one would reach 2^64 bytes; the results stop
    /// growing at what Linux can exec, and the reference that would not fit stays as written.
    #[test]
    fn chained_doubling_is_bounded() {
        let mut vars = vec![("V0".to_string(), "x".repeat(1000))];
        for i in 1..64 {
            let value = expand(&format!("$(V{})$(V{})", i - 1, i - 1), lookup_in(&vars));
            assert!(value.len() <= MAX_EXPANDED, "V{i} is {} bytes", value.len());
            vars.push((format!("V{i}"), value));
        }
        let last = &vars[63].1;
        assert!(last.ends_with("$(V62)"), "{}", &last[last.len() - 20..]);
        let argv = expand("$(V63) $(V63)", lookup_in(&vars));
        assert!(argv.len() <= MAX_EXPANDED);
    }

    /// Many unterminated `$(` once cost a scan to the end each: quadratic in the input.
    #[test]
    fn unterminated_references_are_linear() {
        let input = "$(".repeat(1 << 20);
        assert_eq!(expand(&input, |_| Some("v".into())), input);
        let input = format!("{}$(A)", "$(".repeat(1 << 20));
        // The first `$(` swallows everything up to the only `)`: one undefined name.
        assert_eq!(expand(&input, |_| None), input);
    }

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
