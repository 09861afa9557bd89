//! Incremental Server-Sent Events parser (WHATWG HTML Living Standard,
//! §9.2.6 "Interpreting an event stream"), fed arbitrary byte fragments.
//!
//! Lines end in CRLF, LF or CR (a CR at the end of one fragment and an LF at
//! the start of the next are one line end). `data` fields of one event are
//! joined with `\n`; a blank line dispatches the event; `:` lines are
//! comments. `event` is kept (an `error` event type is surfaced); `id` and
//! `retry` are ignored because this client never reconnects a stream (a
//! reconnect after the first byte would splice two answers).
//!
//! Stricter than the standard where the input is hostile: a line longer than
//! `max_line` bytes or an event larger than `max_event` bytes, and bytes that
//! are not UTF-8, are errors rather than being buffered or replaced.

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, empty when absent.
    pub event: String,
    pub data: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    #[error("SSE line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("SSE event larger than {0} bytes")]
    EventTooLarge(usize),
    #[error("SSE stream is not valid UTF-8")]
    NotUtf8,
}

#[derive(Debug)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: String,
    last_was_cr: bool,
    at_start: bool,
    max_line: usize,
    max_event: usize,
}

impl SseParser {
    pub(crate) fn new(max_line: usize, max_event: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event: String::new(),
            last_was_cr: false,
            at_start: true,
            max_line,
            max_event,
        }
    }

    /// Feeds bytes; appends each completed event to `out`.
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.last_was_cr {
                self.last_was_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    self.append(&rest[..i])?;
                    self.last_was_cr = rest[i] == b'\r';
                    rest = &rest[i + 1..];
                    self.end_line(out)?;
                }
                None => {
                    self.append(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    /// End of the byte stream. The standard discards an event that was not
    /// terminated by a blank line; we still process a final unterminated
    /// line and event, because some servers omit the last blank line after
    /// `[DONE]` — a truncated JSON payload is still caught by the JSON layer.
    pub(crate) fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if !self.line.is_empty() {
            self.end_line(out)?;
        }
        self.dispatch(out);
        Ok(())
    }

    fn append(&mut self, b: &[u8]) -> Result<(), SseError> {
        if self.line.len() + b.len() > self.max_line {
            return Err(SseError::LineTooLong(self.max_line));
        }
        self.line.extend_from_slice(b);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let raw = std::mem::take(&mut self.line);
        let mut line = std::str::from_utf8(&raw).map_err(|_| SseError::NotUtf8)?;
        if self.at_start {
            self.at_start = false;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event {
                    return Err(SseError::EventTooLarge(self.max_event));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => {
                // Only short names are meaningful; keep at most 64 chars.
                self.event = value.chars().take(64).collect();
            }
            // id, retry and unknown fields are ignored, as the standard says.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent { event: std::mem::take(&mut self.event), data: std::mem::take(&mut self.data) });
        }
        self.has_data = false;
        self.data.clear();
        self.event.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Result<Vec<SseEvent>, SseError> {
        let mut p = SseParser::new(1 << 16, 1 << 20);
        let mut out = Vec::new();
        for c in input.chunks(piece.max(1)) {
            p.push(c, &mut out)?;
        }
        p.finish(&mut out)?;
        Ok(out)
    }

    fn datas(v: &[SseEvent]) -> Vec<&str> {
        v.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn every_fragmentation_gives_the_same_events() {
        let input = b"\xEF\xBB\xBF: comment\r\ndata: {\"a\":1}\r\n\r\nevent: x\rdata:two\rdata:  lines\r\rid: 5\nretry: 9\ndata: [DONE]\n\n";
        let whole = parse_in_pieces(input, input.len()).unwrap();
        assert_eq!(datas(&whole), vec!["{\"a\":1}", "two\n lines", "[DONE]"]);
        assert_eq!(whole[1].event, "x");
        assert_eq!(whole[2].event, "");
        for piece in 1..input.len() {
            assert_eq!(parse_in_pieces(input, piece).unwrap(), whole, "piece size {piece}");
        }
    }

    #[test]
    fn multibyte_utf8_split_across_fragments() {
        let input = "data: héllo → 世界\n\n".as_bytes();
        for piece in 1..input.len() {
            assert_eq!(datas(&parse_in_pieces(input, piece).unwrap()), vec!["héllo → 世界"]);
        }
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        assert!(parse_in_pieces(b"event: ping\n\n: keepalive\n\n\n\n", 3).unwrap().is_empty());
        assert_eq!(datas(&parse_in_pieces(b"data\n\n", 3).unwrap()), vec![""]);
    }

    #[test]
    fn unterminated_tail_is_still_processed() {
        assert_eq!(datas(&parse_in_pieces(b"data: [DONE]", 4).unwrap()), vec!["[DONE]"]);
        assert_eq!(datas(&parse_in_pieces(b"data: [DONE]\n", 4).unwrap()), vec!["[DONE]"]);
    }

    #[test]
    fn hostile_input_is_rejected() {
        let mut p = SseParser::new(16, 64);
        let mut out = Vec::new();
        assert_eq!(p.push(b"data: 0123456789abcdef", &mut out), Err(SseError::LineTooLong(16)));

        let mut p = SseParser::new(64, 16);
        assert_eq!(p.push(b"data: 0123456789\ndata: 0123456789\n", &mut out), Err(SseError::EventTooLarge(16)));

        let mut p = SseParser::new(64, 64);
        assert_eq!(p.push(b"data: \xff\xfe\n", &mut out), Err(SseError::NotUtf8));
    }
}
