//! A minimal FreeSWITCH event-socket (ESL) client: auth and `api` commands.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Esl {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Esl {
    pub fn connect(port: u16, password: &str) -> std::io::Result<Esl> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut esl = Esl {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        };
        let (headers, _) = esl.read_message()?;
        if !headers.contains("auth/request") {
            return Err(std::io::Error::other(format!(
                "unexpected greeting: {headers}"
            )));
        }
        esl.writer
            .write_all(format!("auth {password}\n\n").as_bytes())?;
        let (headers, _) = esl.read_message()?;
        if !headers.contains("+OK") {
            return Err(std::io::Error::other(format!("auth failed: {headers}")));
        }
        Ok(esl)
    }

    /// Runs an API command and returns its output.
    pub fn api(&mut self, cmd: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("api {cmd}\n\n").as_bytes())?;
        loop {
            let (headers, body) = self.read_message()?;
            if headers.contains("api/response") {
                return Ok(body);
            }
        }
    }

    fn read_message(&mut self) -> std::io::Result<(String, String)> {
        let mut headers = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("event socket closed"));
            }
            if line == "\n" {
                if headers.is_empty() {
                    continue;
                }
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push_str(&line);
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok((headers, String::from_utf8_lossy(&body).into_owned()))
    }
}
