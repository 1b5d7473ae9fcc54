//! Kubernetes' `$(VAR)` expansion, used for `env[].value`, `command` and `args`.
//!
//! The rules of Kubernetes' `third_party/forked/golang/expansion`:
//! - `$(NAME)` becomes the value of `NAME` when it is defined, and stays `$(NAME)` verbatim
//!   when it is not;
//! - `$$` is an escaped `$`: `$$(NAME)` becomes the literal `$(NAME)`;
//! - a `$` followed by anything else, an unterminated `$(`, and a trailing `$` are kept as
//!   they are.

/// Expands `$(NAME)` references in `input` with `lookup`.
pub(crate) fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if after.is_empty() {
            // A trailing `$` is kept.
            out.push('$');
            rest = after;
            break;
        }
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(reference) = after.strip_prefix('(') {
            match reference.find(')') {
                Some(close) => {
                    let name = &reference[..close];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &reference[close + 1..];
                }
                None => {
                    // Unterminated: keep `$(` and go on after it, as Kubernetes does.
                    out.push_str("$(");
                    rest = reference;
                }
            }
        } else {
            // An operator that starts no expression: kept with what follows it.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<&'static str> {
        match name {
            "A" => Some("alpha"),
            "EMPTY" => Some(""),
            _ => None,
        }
    }

    #[test]
    fn expands_defined_references() {
        assert_eq!(expand("x-$(A)-y", lookup), "x-alpha-y");
        assert_eq!(expand("$(A)$(A)", lookup), "alphaalpha");
        assert_eq!(expand("[$(EMPTY)]", lookup), "[]");
    }

    #[test]
    fn keeps_undefined_references_verbatim() {
        assert_eq!(expand("$(NOPE)", lookup), "$(NOPE)");
        assert_eq!(expand("a $(NOPE) $(A)", lookup), "a $(NOPE) alpha");
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(expand("$$(A)", lookup), "$(A)");
        assert_eq!(expand("$$$(A)", lookup), "$alpha");
        assert_eq!(expand("$$", lookup), "$");
        assert_eq!(expand("cost: $$5", lookup), "cost: $5");
    }

    #[test]
    fn odd_operators_are_kept() {
        assert_eq!(expand("$", lookup), "$");
        assert_eq!(expand("a$", lookup), "a$");
        assert_eq!(expand("$A", lookup), "$A");
        assert_eq!(expand("$(A", lookup), "$(A");
        assert_eq!(expand("$($(A)", lookup), "$($(A)");
        assert_eq!(expand("$()", lookup), "$()");
        assert_eq!(expand("é$é", lookup), "é$é");
    }
}
