//! Query vectors from NumPy `.npy` files, the form embedding pipelines already write
//! (`np.save("q.npy", embeddings)`), so they need not be turned into JSON first.
//!
//! Only what a query file needs is accepted: little-endian float32 (`<f4`) in C order, shape
//! `(d,)` (one vector) or `(n, d)` (n vectors), format versions 1.0, 2.0 and 3.0. Anything
//! else is refused with the reason rather than converted: a `<f8` file read as `<f4` would
//! give garbage, and a silent cast would hide that the pipeline writes a different type than
//! the index holds.
//!
//! The format (numpy's `numpy/lib/format.py`): the magic `\x93NUMPY`, a major and a minor
//! version byte, the header length (u16 LE in 1.0, u32 LE in 2.0 and 3.0), then the header —
//! a Python dict literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`
//! padded with spaces to a newline — then the raw data. The header is parsed strictly by
//! hand (three keys, nothing else); the data is read in one read straight into the floats.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The first bytes of every `.npy` file.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Longest header accepted: numpy itself refuses to read headers above 10 000 bytes unless
/// told otherwise, and a query file's header is under 128.
const MAX_HEADER_LEN: usize = 10_000;

/// Query vectors read from a `.npy` file: `rows × dims` floats, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyVectors {
    /// The shape had one dimension, `(d,)`: a single vector rather than a one-row matrix.
    pub one_dimensional: bool,
    pub dims: usize,
    data: Vec<f32>,
}

impl NpyVectors {
    /// Number of vectors (at least one: an empty array is refused).
    pub fn len(&self) -> usize {
        self.data.len() / self.dims
    }

    /// Always false; for symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The vectors, in file order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> + '_ {
        self.data.chunks_exact(self.dims)
    }

    /// All floats, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
}

/// Whether `bytes` (the start of a file) begin with the `.npy` magic.
pub fn is_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(NPY_MAGIC)
}

/// Reads a `.npy` file of query vectors (see the module documentation for what is accepted).
/// Errors name `path` and the reason.
pub fn read_npy(path: &Path) -> Result<NpyVectors> {
    let invalid = |reason: String| Error::InvalidInput {
        path: path.to_path_buf(),
        reason,
    };
    let io = |e| Error::io(path, e);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let eof = |what: &str| invalid(format!("truncated .npy file: ends inside the {what}"));

    let mut preamble = Vec::with_capacity(8);
    (&mut file).take(8).read_to_end(&mut preamble).map_err(io)?;
    if !is_npy(&preamble) {
        return Err(invalid(
            "not a .npy file: it does not start with the \\x93NUMPY magic".into(),
        ));
    }
    if preamble.len() < 8 {
        return Err(eof("version bytes"));
    }
    let (major, minor) = (preamble[6], preamble[7]);
    let header_len = match (major, minor) {
        (1, 0) => {
            let mut len = [0u8; 2];
            read_all(&mut file, &mut len)
                .map_err(io)?
                .then_some(())
                .ok_or_else(|| eof("header length"))?;
            usize::from(u16::from_le_bytes(len))
        }
        (2 | 3, 0) => {
            let mut len = [0u8; 4];
            read_all(&mut file, &mut len)
                .map_err(io)?
                .then_some(())
                .ok_or_else(|| eof("header length"))?;
            u32::from_le_bytes(len) as usize
        }
        _ => {
            return Err(invalid(format!(
                ".npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)"
            )))
        }
    };
    if header_len > MAX_HEADER_LEN {
        return Err(invalid(format!(
            ".npy header is {header_len} bytes, more than the {MAX_HEADER_LEN} accepted"
        )));
    }
    let mut header = vec![0u8; header_len];
    read_all(&mut file, &mut header)
        .map_err(io)?
        .then_some(())
        .ok_or_else(|| eof("header"))?;
    // 1.0 and 2.0 headers are latin-1, 3.0 headers UTF-8; a valid header is ASCII in all.
    let header = std::str::from_utf8(&header)
        .ok()
        .filter(|h| h.is_ascii())
        .ok_or_else(|| invalid(".npy header is not ASCII text".into()))?;
    let header = Header::parse(header).map_err(|e| invalid(format!(".npy header: {e}")))?;
    if header.descr != "<f4" {
        return Err(invalid(format!(
            "dtype {:?} is not supported: query vectors must be little-endian float32 ('<f4'); \
             save them with .astype('<f4')",
            header.descr
        )));
    }
    if header.fortran_order {
        return Err(invalid(
            "the array is in Fortran order; save it in C order (np.ascontiguousarray)".into(),
        ));
    }
    let shape = shape_text(&header.shape);
    let (rows, dims, one_dimensional) = match header.shape[..] {
        [d] => (1, d, true),
        [n, d] => (n, d, false),
        _ => {
            return Err(invalid(format!(
                "shape {shape} has {} dimensions: expected (d,) for one query or (n, d) for n",
                header.shape.len()
            )))
        }
    };
    if rows == 0 || dims == 0 {
        return Err(invalid(format!("shape {shape} holds no query vector")));
    }
    let count = rows
        .checked_mul(dims)
        .filter(|&c| c.checked_mul(4).is_some_and(|b| b <= isize::MAX as usize))
        .ok_or_else(|| invalid(format!("shape {shape} is too large")))?;
    let data_start = (preamble.len() + header_len + if major == 1 { 2 } else { 4 }) as u64;
    let expected = data_start + count as u64 * 4;
    if file_len < expected {
        return Err(invalid(format!(
            "truncated .npy file: shape {shape} needs {} bytes of data, the file has {}",
            count * 4,
            file_len.saturating_sub(data_start)
        )));
    }
    if file_len > expected {
        return Err(invalid(format!(
            ".npy file has {} bytes after the data that shape {shape} describes",
            file_len - expected
        )));
    }
    let mut data = vec![0f32; count];
    // The target is little-endian (see lib.rs), so '<f4' bytes are the floats as they are.
    file.read_exact(bytemuck::cast_slice_mut(&mut data))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => eof("data"),
            _ => io(e),
        })?;
    Ok(NpyVectors {
        one_dimensional,
        dims,
        data,
    })
}

/// A shape as Python prints it: `(3,)`, `(2, 3)`.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Fills `buf`; false if the reader ended first.
fn read_all(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// The three keys of a `.npy` header.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    /// Parses the dict literal: exactly the keys `descr` (a string), `fortran_order` (`True`
    /// or `False`) and `shape` (a tuple of non-negative integers), in any order, each once,
    /// with an optional trailing comma, then only spaces and the closing newline.
    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut p = Parser {
            rest: text.trim_end_matches(['\n', ' ']),
        };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        p.expect('{')?;
        loop {
            p.skip_spaces();
            if p.eat('}') {
                break;
            }
            let key = p.string()?;
            p.expect(':')?;
            match key.as_str() {
                "descr" if descr.is_none() => descr = Some(p.string()?),
                "fortran_order" if fortran_order.is_none() => fortran_order = Some(p.boolean()?),
                "shape" if shape.is_none() => shape = Some(p.tuple()?),
                "descr" | "fortran_order" | "shape" => return Err(format!("key {key:?} twice")),
                _ => return Err(format!("unexpected key {key:?}")),
            }
            p.skip_spaces();
            if !p.eat(',') {
                p.expect('}')?;
                break;
            }
        }
        if !p.rest.is_empty() {
            return Err(format!("unexpected text after the dict: {:?}", p.rest));
        }
        Ok(Header {
            descr: descr.ok_or("no 'descr' key")?,
            fortran_order: fortran_order.ok_or("no 'fortran_order' key")?,
            shape: shape.ok_or("no 'shape' key")?,
        })
    }
}

/// A cursor over the header text.
struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start_matches(' ');
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> std::result::Result<(), String> {
        self.skip_spaces();
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {c:?} at {:?}", self.near()))
        }
    }

    fn near(&self) -> &str {
        &self.rest[..self.rest.len().min(20)]
    }

    /// A quoted string without escapes (none of the accepted values needs one).
    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_spaces();
        let quote = match self.rest.chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(format!("expected a quoted string at {:?}", self.near())),
        };
        let body = &self.rest[1..];
        let end = body
            .find(quote)
            .ok_or_else(|| format!("unterminated string at {:?}", self.near()))?;
        let value = &body[..end];
        if value.contains('\\') {
            return Err(format!("escapes in strings are not supported: {value:?}"));
        }
        self.rest = &body[end + 1..];
        Ok(value.to_owned())
    }

    fn boolean(&mut self) -> std::result::Result<bool, String> {
        self.skip_spaces();
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(rest) = self.rest.strip_prefix(word) {
                self.rest = rest;
                return Ok(value);
            }
        }
        Err(format!("expected True or False at {:?}", self.near()))
    }

    fn integer(&mut self) -> std::result::Result<usize, String> {
        self.skip_spaces();
        let digits = self.rest.len()
            - self
                .rest
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        if digits == 0 {
            return Err(format!("expected an integer at {:?}", self.near()));
        }
        let (number, rest) = self.rest.split_at(digits);
        self.rest = rest;
        number
            .parse()
            .map_err(|_| format!("dimension {number} is too large"))
    }

    /// `()`, `(a,)`, `(a, b)`, `(a, b,)`, …
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect('(')?;
        let mut items = Vec::new();
        loop {
            self.skip_spaces();
            if self.eat(')') {
                break;
            }
            items.push(self.integer()?);
            self.skip_spaces();
            if self.eat(',') {
                continue;
            }
            self.expect(')')?;
            if items.len() == 1 {
                // `(3)` is the integer 3 in Python, not a tuple.
                return Err("a one-element shape needs a trailing comma: (d,)".into());
            }
            break;
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_as_numpy_writes_it() {
        let h = Header::parse(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 384), }            \n",
        )
        .unwrap();
        assert_eq!(
            h,
            Header {
                descr: "<f4".into(),
                fortran_order: false,
                shape: vec![3, 384]
            }
        );
        let one =
            Header::parse("{'shape': (7,), 'fortran_order': True, \"descr\": '>f8'}\n").unwrap();
        assert_eq!(one.shape, vec![7]);
        assert!(one.fortran_order);
        assert_eq!(one.descr, ">f8");
    }

    #[test]
    fn header_refusals() {
        for (text, wanted) in [
            ("{'descr': '<f4', 'fortran_order': False}", "no 'shape'"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}",
                "unexpected key",
            ),
            (
                "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
                "twice",
            ),
            (
                "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}",
                "True or False",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3)}",
                "trailing comma",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}",
                "integer",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} x",
                "after the dict",
            ),
            (
                "{'descr': '<f4, 'fortran_order': False, 'shape': (3,)}",
                "expected",
            ),
        ] {
            let err = Header::parse(text).unwrap_err();
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }
}
