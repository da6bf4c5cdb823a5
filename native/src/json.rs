//! A strict JSON reader into a borrowed tree, and a writer that prints exactly what
//! `orjson.dumps` prints for the same value.
//!
//! The reader accepts only what it can round-trip byte for byte: integers that fit in 64 bits,
//! no floats, no duplicate object keys. Anything else is `Err(())`, which tells the caller to
//! hand the line to the Python path (which then either handles it or names the error).

use std::borrow::Cow;
use std::collections::HashSet;

/// A parsed JSON value; strings without escapes borrow from the input line.
#[derive(Debug)]
pub enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Str(Cow<'a, str>),
    /// `raw`: the value's own text when it is already in orjson's compact form (copied as is).
    Arr(Vec<V<'a>>, Option<&'a str>),
    Obj(Vec<(Cow<'a, str>, V<'a>)>, Option<&'a str>),
}

impl<'a> V<'a> {
    /// Python's `obj.get(key)` on a dict: None when the key is missing *or* null.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&V<'a>> {
        match self {
            V::Obj(pairs, _) => match pairs.iter().find(|(k, _)| same_key(k, key)) {
                Some((_, V::Null)) | None => None,
                Some((_, v)) => Some(v),
            },
            _ => None,
        }
    }

    /// `key in obj` on a dict (present, even when null).
    pub fn has(&self, key: &str) -> bool {
        matches!(self, V::Obj(pairs, _) if pairs.iter().any(|(k, _)| k == key))
    }

    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python truthiness of the decoded value.
    pub fn truthy(&self) -> bool {
        match self {
            V::Null => false,
            V::Bool(b) => *b,
            V::Int(i) => *i != 0,
            V::UInt(u) => *u != 0,
            V::Str(s) => !s.is_empty(),
            V::Arr(a, _) => !a.is_empty(),
            V::Obj(o, _) => !o.is_empty(),
        }
    }

    pub fn is_obj(&self) -> bool {
        matches!(self, V::Obj(..))
    }
}

/// Nesting limit, the event object counting as 1: its document nests it 3 levels deeper (and a
/// JSON-patch body one more), and orjson refuses to write past 254 levels; deeper events are Python's.
const MAX_DEPTH: u32 = 251;

/// Parse one JSON text (leading/trailing JSON whitespace allowed).
/// `Err(())`: not JSON this reader accepts; the caller only declines the line (Python decides why).
#[allow(clippy::result_unit_err)]
pub fn parse(text: &[u8]) -> Result<V<'_>, ()> {
    let text = std::str::from_utf8(text).map_err(|_| ())?;
    let mut p = Reader { s: text.as_bytes(), t: text, i: 0, depth: 0, clean: true };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(());
    }
    Ok(v)
}

struct Reader<'a> {
    s: &'a [u8],
    t: &'a str,
    i: usize,
    depth: u32,
    /// No whitespace, escape or `-0` seen since the innermost open container began.
    clean: bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `w` that may be `"`, `\` or a control character; the lowest flagged
/// byte is always exact (SWAR; later ones can be false positives).
#[inline(always)]
fn specials(w: u64) -> u64 {
    let q = w ^ (ONES * b'"' as u64);
    let b = w ^ (ONES * b'\\' as u64);
    (w.wrapping_sub(ONES * 0x20) & !w & HIGHS) | (q.wrapping_sub(ONES) & !q & HIGHS) | (b.wrapping_sub(ONES) & !b & HIGHS)
}

/// Index of the first `"`, `\\` or control byte at or after `i` (or `s.len()`).
#[inline]
pub fn next_special(s: &[u8], mut i: usize) -> usize {
    while i + 8 <= s.len() {
        let w = u64::from_le_bytes(s[i..i + 8].try_into().unwrap());
        let m = specials(w);
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < s.len() {
        let c = s[i];
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

impl<'a> Reader<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.s.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.i += 1;
                self.clean = false;
            } else {
                break;
            }
        }
    }

    fn value(&mut self) -> Result<V<'a>, ()> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(V::Str(self.string()?)),
            Some(b't') => self.literal(b"true", V::Bool(true)),
            Some(b'f') => self.literal(b"false", V::Bool(false)),
            Some(b'n') => self.literal(b"null", V::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(()),
        }
    }

    fn literal(&mut self, word: &[u8], v: V<'a>) -> Result<V<'a>, ()> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(())
        }
    }

    fn number(&mut self) -> Result<V<'a>, ()> {
        let start = self.i;
        let negative = self.s[self.i] == b'-';
        if negative {
            self.i += 1;
        }
        match self.s.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.s.get(self.i), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return Err(()),
        }
        if matches!(self.s.get(self.i), Some(b'.' | b'e' | b'E')) {
            return Err(()); // floats: orjson's float printing is not reproduced here
        }
        let text = &self.t[start..self.i];
        if text == "-0" {
            self.clean = false;
        }
        if negative {
            text.parse::<i64>().map(V::Int).map_err(|_| ())
        } else {
            let u = text.parse::<u64>().map_err(|_| ())?;
            Ok(if u <= i64::MAX as u64 { V::Int(u as i64) } else { V::UInt(u) })
        }
    }

    fn string(&mut self) -> Result<Cow<'a, str>, ()> {
        self.i += 1; // opening quote
        let start = self.i;
        self.i = next_special(self.s, self.i);
        match self.s.get(self.i) {
            Some(b'"') => {
                let out = &self.t[start..self.i];
                self.i += 1;
                return Ok(Cow::Borrowed(out));
            }
            Some(b'\\') => self.clean = false,
            _ => return Err(()),
        }
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(&self.t[start..self.i]);
        loop {
            let run = self.i;
            self.i = next_special(self.s, self.i);
            out.push_str(&self.t[run..self.i]);
            match self.s.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    let esc = *self.s.get(self.i + 1).ok_or(())?;
                    self.i += 2;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.i) != Some(&b'\\') || self.s.get(self.i + 1) != Some(&b'u') {
                                    return Err(());
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(());
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(());
                            } else {
                                hi
                            };
                            out.push(char::from_u32(code).ok_or(())?);
                        }
                        _ => return Err(()),
                    }
                }
                _ => return Err(()),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ()> {
        let digits = self.s.get(self.i..self.i + 4).ok_or(())?;
        let mut v = 0u32;
        for &d in digits {
            v = v * 16 + (d as char).to_digit(16).ok_or(())?;
        }
        self.i += 4;
        Ok(v)
    }

    /// Open a container: returns (its start, the enclosing container's clean flag).
    fn enter(&mut self) -> Result<(usize, bool), ()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(());
        }
        let start = self.i;
        self.i += 1;
        let outer = self.clean;
        self.clean = true;
        Ok((start, outer))
    }

    /// Close a container opened at `start`: its raw text if clean, and restore the outer flag.
    fn leave(&mut self, start: usize, outer: bool) -> Option<&'a str> {
        self.depth -= 1;
        let raw = if self.clean { Some(&self.t[start..self.i]) } else { None };
        self.clean = outer && self.clean;
        raw
    }

    fn array(&mut self) -> Result<V<'a>, ()> {
        let (start, outer) = self.enter()?;
        let mut items = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(V::Arr(items, self.leave(start, outer)));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(V::Arr(items, self.leave(start, outer)));
                }
                _ => return Err(()),
            }
        }
    }

    fn object(&mut self) -> Result<V<'a>, ()> {
        let (start, outer) = self.enter()?;
        let mut pairs: Vec<(Cow<'a, str>, V<'a>)> = Vec::with_capacity(8);
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(V::Obj(pairs, self.leave(start, outer)));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return Err(());
            }
            let key = self.string()?;
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return Err(());
            }
            self.i += 1;
            let value = self.value()?;
            pairs.push((key, value));
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    if has_duplicates(&pairs) {
                        return Err(()); // Python keeps the last value at the first position
                    }
                    return Ok(V::Obj(pairs, self.leave(start, outer)));
                }
                _ => return Err(()),
            }
        }
    }
}

/// `a == b`, rejecting most unequal keys on length and first byte before comparing bytes.
#[inline(always)]
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

fn has_duplicates(pairs: &[(Cow<'_, str>, V<'_>)]) -> bool {
    if pairs.len() <= 32 {
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(other, _)| same_key(other, k)) {
                return true;
            }
        }
        return false;
    }
    let mut seen = HashSet::with_capacity(pairs.len());
    pairs.iter().any(|(k, _)| !seen.insert(k.as_ref()))
}

// ---- writer ---------------------------------------------------------------------------------

/// Append `s` as a JSON string, escaped the way orjson escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut last = 0;
    let mut i = next_special(bytes, 0);
    while i < bytes.len() {
        let c = bytes[i];
        out.extend_from_slice(&bytes[last..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 0xf) as usize]);
            }
        }
        last = i + 1;
        i = next_special(bytes, last);
    }
    out.extend_from_slice(&bytes[last..]);
    out.push(b'"');
}

pub fn write_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

/// Append a parsed value in orjson's compact form.
pub fn write_value(out: &mut Vec<u8>, v: &V<'_>) {
    match v {
        V::Null => out.extend_from_slice(b"null"),
        V::Bool(true) => out.extend_from_slice(b"true"),
        V::Bool(false) => out.extend_from_slice(b"false"),
        V::Int(i) => write_int(out, *i),
        V::UInt(u) => {
            let mut buf = itoa::Buffer::new();
            out.extend_from_slice(buf.format(*u).as_bytes());
        }
        V::Str(Cow::Borrowed(s)) => {
            // borrowed = written without escapes in the line, so nothing to escape
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        V::Str(s) => write_str(out, s),
        V::Arr(_, Some(raw)) | V::Obj(_, Some(raw)) => out.extend_from_slice(raw.as_bytes()),
        V::Arr(items, None) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        V::Obj(pairs, None) => {
            out.push(b'{');
            for (i, (k, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(text: &str) -> Option<String> {
        let v = parse(text.as_bytes()).ok()?;
        let mut out = Vec::new();
        write_value(&mut out, &v);
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn compact_form() {
        assert_eq!(roundtrip(" { \"a\" : [1, -0, true, null, \"x\\u00e9\\/\"] } ").unwrap(), "{\"a\":[1,0,true,null,\"xé/\"]}");
        assert_eq!(roundtrip("\"\\u0001\\b\\f\\n\\r\\t\\\"\\\\\"").unwrap(), "\"\\u0001\\b\\f\\n\\r\\t\\\"\\\\\"");
        assert_eq!(roundtrip("\"\\ud83d\\ude00\"").unwrap(), "\"😀\"");
        assert_eq!(roundtrip("18446744073709551615").unwrap(), "18446744073709551615");
    }

    #[test]
    fn refuses_what_it_cannot_round_trip() {
        for bad in ["1.5", "1e3", "18446744073709551616", "{\"a\":1,\"a\":2}", "\"\\ud800\"", "[1,]", "01", "\"a\nb\"", "{}x"] {
            assert!(roundtrip(bad).is_none(), "{bad}");
        }
    }
}
