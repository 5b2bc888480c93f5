//! Writing Redis commands in RESP. Pure.

/// Appends one command, e.g. `["PUBLISH", channel, payload]`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    // The headers take at most 24 bytes each: one reservation, no regrowth.
    out.reserve(24 * (args.len() + 1) + args.iter().map(|a| a.len()).sum::<usize>());
    header(out, b'*', args.len());
    for a in args {
        header(out, b'$', a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// `*<n>\r\n` or `$<n>\r\n`, without going through the formatter.
fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(kind);
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
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
    fn lengths_of_every_size_are_written_in_decimal() {
        for n in [0usize, 1, 9, 10, 99, 100, 12345, usize::MAX] {
            let mut out = Vec::new();
            header(&mut out, b'$', n);
            assert_eq!(out, format!("${n}\r\n").into_bytes());
        }
        let big = vec![b'x'; 1000];
        let mut out = Vec::new();
        command(&mut out, &[b"SET", b"", &big]);
        assert!(out.starts_with(b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$1000\r\nxxx"));
    }

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
