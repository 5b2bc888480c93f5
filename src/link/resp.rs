//! Writing Redis commands in RESP. Pure.

use std::io::Write;

/// Appends one command, e.g. `["PUBLISH", channel, payload]`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A server error reply as one line, e.g. `NOPERM this user has no permissions ...`.
pub fn error_text(e: &redis::ServerError) -> String {
    match e.details() {
        Some(d) => format!("{} {d}", e.code()),
        None => e.code().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_binary_safe_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"PUBLISH", b"ch", b"a\r\nb"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n");
        command(&mut out, &[b"PING"]);
        assert!(out.ends_with(b"*1\r\n$4\r\nPING\r\n"));
    }

    #[test]
    fn server_errors_read_as_one_line() {
        let v = redis::parse_redis_value(b"-NOPERM no permissions to access the 'x' channel\r\n")
            .unwrap();
        let redis::Value::ServerError(e) = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            error_text(&e),
            "NOPERM no permissions to access the 'x' channel"
        );
    }
}
