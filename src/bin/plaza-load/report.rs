//! What every mode's report ends with: the command line that reproduces the run, quoted for a
//! POSIX shell, with the admin token's value left to `$PLAZA_ADMIN_TOKEN`.

/// The command line of this run, quoted for a POSIX shell, with the admin token's value hidden.
pub fn reproduce_command() -> String {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in std::env::args() {
        if hide_next {
            out.push("\"$PLAZA_ADMIN_TOKEN\"".to_string());
            hide_next = false;
        } else if arg == "--admin-token" {
            out.push(arg);
            hide_next = true;
        } else if arg.starts_with("--admin-token=") {
            out.push("--admin-token=\"$PLAZA_ADMIN_TOKEN\"".to_string());
        } else {
            out.push(shell_quote(&arg));
        }
    }
    out.join(" ")
}

pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("--connections"), "--connections");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
