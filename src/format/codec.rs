//! The fixed-width little-endian fields every structure of the format is made of:
//! [`Reader`] takes them off a byte slice in order, failing past its end (never
//! panicking), and [`Writer`] appends them to a buffer.

/// A read past the end of the bytes: the field that starts at byte `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Short {
    pub(crate) at: usize,
}

impl From<Short> for String {
    fn from(short: Short) -> String {
        format!("it ends inside a field at byte {}", short.at)
    }
}

/// Reads fields from a byte slice, in order.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.at
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(Short { at: self.at });
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        Ok(b)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Short> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Short> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Short> {
        self.array().map(i64::from_le_bytes)
    }
}

/// Appends fields to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Writer {
        Writer(Vec::with_capacity(n))
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Writer {
        self.0.extend_from_slice(b);
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Writer {
        self.bytes(&v.to_le_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Writer {
        self.bytes(&v.to_le_bytes())
    }

    pub(crate) fn i64(&mut self, v: i64) -> &mut Writer {
        self.bytes(&v.to_le_bytes())
    }

    /// Overwrites the u32 at byte `at` (a count known only later).
    pub(crate) fn set_u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// The bytes from `from` on.
    pub(crate) fn since(&self, from: usize) -> &[u8] {
        &self.0[from..]
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// The bytes as an array of `N`, zero-filled past what was written (which must
    /// not be longer).
    pub(crate) fn into_array<const N: usize>(self) -> [u8; N] {
        let mut b = [0u8; N];
        b[..self.0.len()].copy_from_slice(&self.0);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_as_written_and_a_short_read_fails() {
        let mut w = Writer::default();
        w.u32(7).u64(u64::MAX - 1).i64(-3).bytes(b"key");
        let at = w.len();
        w.u32(0);
        w.set_u32(at, 9);
        assert_eq!(w.since(at), &9u32.to_le_bytes());
        let bytes = w.into_vec();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u32(), Ok(7));
        assert_eq!(r.u64(), Ok(u64::MAX - 1));
        assert_eq!(r.i64(), Ok(-3));
        assert_eq!(r.take(3), Ok(&b"key"[..]));
        assert_eq!(r.position(), 23);
        assert_eq!(r.u64(), Err(Short { at: 23 }));
        assert_eq!(r.u32(), Ok(9));
        assert_eq!(r.take(usize::MAX), Err(Short { at: 27 }));
        assert_eq!(
            String::from(Short { at: 4 }),
            "it ends inside a field at byte 4"
        );
        let mut w = Writer::with_capacity(8);
        w.u32(1);
        assert_eq!(w.into_array::<8>(), [1, 0, 0, 0, 0, 0, 0, 0]);
    }
}
