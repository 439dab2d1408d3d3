//! An export read as it streams in: large blocks of whole lines, in time linear in the input and
//! memory bounded whatever it holds. A line longer than the largest record the server can write is
//! not held: it is skipped as it is read and reported by its number, so a hostile file (one line of
//! 128 MiB, no newline at all) costs one pass over its bytes.

use std::io::Read;

pub use crate::limits::oversized_reason;
use crate::limits::MAX_RECORD_BYTES;

/// Bytes read at once.
const BLOCK: usize = 1 << 20;

/// A piece of an export, in file order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Whole lines, the first of them line `first_line` (from 1). Every line ends with a newline
    /// except, when `complete` is false, the last one: the input ended without one.
    Lines {
        /// The number of the first line.
        first_line: u64,
        /// The lines' bytes.
        bytes: Vec<u8>,
        /// False when the last line lacks its newline.
        complete: bool,
        /// The longest line kept: a longer one among these is reported by its length.
        max_line: usize,
        /// How many lines these are.
        count: usize,
    },
    /// A line longer than any record, skipped unread.
    Oversized {
        /// Its number.
        line: u64,
        /// Its length in bytes, without the newline.
        length: u64,
        /// False when the input ended inside it.
        complete: bool,
    },
}

/// Splits an input into [`Piece`]s.
pub struct Blocks<R> {
    input: R,
    /// Bytes read at once.
    block: usize,
    /// The longest line kept.
    max_line: usize,
    /// Bytes read after the last newline handed out: part of the next line.
    carry: Vec<u8>,
    /// How many bytes at the start of `carry` are known to hold no newline.
    searched: usize,
    next_line: u64,
    at_end: bool,
    failed: bool,
}

impl<R: Read> Blocks<R> {
    /// Reads `input` from its start, keeping lines up to the largest record.
    pub fn new(input: R) -> Self {
        Self::with_limits(input, BLOCK, MAX_RECORD_BYTES)
    }

    /// Reads `input` `block` bytes at a time, keeping lines up to `max_line` bytes: small limits
    /// let tests and fuzzing reach every path with small inputs.
    pub fn with_limits(input: R, block: usize, max_line: usize) -> Self {
        Self {
            input,
            block: block.max(1),
            max_line,
            carry: Vec::new(),
            searched: 0,
            next_line: 1,
            at_end: false,
            failed: false,
        }
    }

    /// Appends up to a block of input to `buffer`; sets `at_end` at the end of the input.
    fn read_more(&mut self, buffer: &mut Vec<u8>) -> std::io::Result<()> {
        let start = buffer.len();
        buffer.resize(start + self.block, 0);
        let mut filled = start;
        while filled < buffer.len() {
            match self.input.read(&mut buffer[filled..]) {
                Ok(0) => {
                    self.at_end = true;
                    break;
                }
                Ok(read) => filled += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    buffer.truncate(filled);
                    return Err(error);
                }
            }
        }
        buffer.truncate(filled);
        Ok(())
    }

    fn lines(&mut self, bytes: Vec<u8>, complete: bool) -> Piece {
        let first_line = self.next_line;
        let count = memchr::memchr_iter(b'\n', &bytes).count() + usize::from(!complete);
        self.next_line += count as u64;
        Piece::Lines {
            first_line,
            bytes,
            complete,
            max_line: self.max_line,
            count,
        }
    }

    /// Skips the rest of a line already `length` bytes long, without keeping it.
    fn skip_line(&mut self, mut length: u64) -> std::io::Result<Piece> {
        let line = self.next_line;
        self.next_line += 1;
        let mut buffer = Vec::with_capacity(self.block);
        loop {
            if self.at_end {
                return Ok(Piece::Oversized {
                    line,
                    length,
                    complete: false,
                });
            }
            buffer.clear();
            self.read_more(&mut buffer)?;
            match memchr::memchr(b'\n', &buffer) {
                Some(newline) => {
                    length += newline as u64;
                    self.carry = buffer.split_off(newline + 1);
                    self.searched = 0;
                    return Ok(Piece::Oversized {
                        line,
                        length,
                        complete: true,
                    });
                }
                None => length += buffer.len() as u64,
            }
        }
    }

    fn next_piece(&mut self) -> std::io::Result<Option<Piece>> {
        loop {
            let mut block = std::mem::take(&mut self.carry);
            if !self.at_end {
                self.read_more(&mut block)?;
            }
            // Only bytes not searched before are searched: a long line costs one pass.
            let found = memchr::memrchr(b'\n', &block[self.searched..]);
            if let Some(newline) = found.map(|at| at + self.searched) {
                self.carry = block.split_off(newline + 1);
                self.searched = 0;
                return Ok(Some(self.lines(block, true)));
            }
            if block.len() > self.max_line {
                return self.skip_line(block.len() as u64).map(Some);
            }
            if self.at_end {
                return Ok((!block.is_empty()).then(|| self.lines(block, false)));
            }
            self.searched = block.len();
            self.carry = block;
        }
    }
}

impl<R: Read> Iterator for Blocks<R> {
    type Item = std::io::Result<Piece>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || (self.at_end && self.carry.is_empty()) {
            return None;
        }
        match self.next_piece() {
            Ok(piece) => piece.map(Ok),
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// One line of a piece.
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// Its number, from 1.
    pub number: u64,
    /// Its bytes without the newline; `Err` with its length when it is longer than any record.
    pub bytes: Result<&'a [u8], u64>,
    /// False when the input ended inside it (no newline).
    pub complete: bool,
}

impl Piece {
    /// The lines of this piece, in order.
    pub fn lines(&self) -> Lines<'_> {
        match self {
            Self::Lines {
                first_line,
                bytes,
                complete,
                max_line,
                ..
            } => Lines {
                rest: Some(bytes.strip_suffix(b"\n").unwrap_or(bytes)),
                number: *first_line,
                complete: *complete,
                max_line: *max_line,
                oversized: None,
            },
            Self::Oversized {
                line,
                length,
                complete,
            } => Lines {
                rest: None,
                number: *line,
                complete: *complete,
                max_line: 0,
                oversized: Some(*length),
            },
        }
    }

    /// How many lines it holds.
    pub fn line_count(&self) -> usize {
        match self {
            Self::Lines { count, .. } => *count,
            Self::Oversized { .. } => 1,
        }
    }
}

/// The lines of a [`Piece`], found with a vectorised search for newlines.
pub struct Lines<'a> {
    /// What is left of the piece's lines, without the final newline.
    rest: Option<&'a [u8]>,
    number: u64,
    /// Whether the piece's last line ended with a newline.
    complete: bool,
    max_line: usize,
    /// The length of the one oversized line an `Oversized` piece stands for.
    oversized: Option<u64>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if let Some(length) = self.oversized.take() {
            return Some(Line {
                number: self.number,
                bytes: Err(length),
                complete: self.complete,
            });
        }
        let rest = self.rest?;
        let (line, complete) = match memchr::memchr(b'\n', rest) {
            Some(newline) => {
                self.rest = Some(&rest[newline + 1..]);
                (&rest[..newline], true)
            }
            None => {
                self.rest = None;
                (rest, self.complete)
            }
        };
        let number = self.number;
        self.number += 1;
        Some(Line {
            number,
            bytes: if line.len() > self.max_line {
                Err(line.len() as u64)
            } else {
                Ok(line)
            },
            complete,
        })
    }
}

/// One line as [`reference_lines`] and [`split_lines`] give it: its number, its bytes (or its
/// length when longer than the longest line kept), and whether a newline ended it.
pub type SplitLine = (u64, Result<Vec<u8>, u64>, bool);

/// What splitting `input` must give, line by line, computed the plain way: for a fuzz target and
/// the tests to hold [`Blocks`] to.
pub fn reference_lines(input: &[u8], max_line: usize) -> Vec<SplitLine> {
    if input.is_empty() {
        return Vec::new();
    }
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    let count = body.split(|byte| *byte == b'\n').count();
    body.split(|byte| *byte == b'\n')
        .enumerate()
        .map(|(index, line)| {
            let bytes = if line.len() > max_line {
                Err(line.len() as u64)
            } else {
                Ok(line.to_vec())
            };
            let complete = index + 1 < count || input.ends_with(b"\n");
            (index as u64 + 1, bytes, complete)
        })
        .collect()
}

/// Every line [`Blocks`] gives for `input` read in reads of at most `read` bytes, in the shape of
/// [`reference_lines`].
///
/// # Errors
/// Never, in practice: the input is in memory.
pub fn split_lines(
    input: &[u8],
    read: usize,
    block: usize,
    max_line: usize,
) -> std::io::Result<Vec<SplitLine>> {
    /// Hands out at most `read` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            let count = self.1.max(1).min(self.0.len()).min(buffer.len());
            buffer[..count].copy_from_slice(&self.0[..count]);
            self.0 = &self.0[count..];
            Ok(count)
        }
    }
    let mut lines = Vec::new();
    for piece in Blocks::with_limits(Trickle(input, read), block, max_line) {
        let piece = piece?;
        lines.extend(
            piece
                .lines()
                .map(|line| (line.number, line.bytes.map(<[u8]>::to_vec), line.complete)),
        );
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_input_read_any_way_splits_as_the_plain_split_does(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), any::<u8>()], 0..200),
            read in 1usize..9,
            block in 1usize..9,
            max_line in 0usize..12,
        ) {
            prop_assert_eq!(
                split_lines(&input, read, block, max_line).unwrap(),
                reference_lines(&input, max_line)
            );
        }
    }

    /// Every line of an input, as (number, bytes or length, complete).
    fn lines_of(input: &[u8]) -> Vec<(u64, Result<Vec<u8>, u64>, bool)> {
        Blocks::new(input)
            .map(Result::unwrap)
            .flat_map(|piece| {
                piece
                    .lines()
                    .map(|line| (line.number, line.bytes.map(<[u8]>::to_vec), line.complete))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn lines_are_numbered_and_a_missing_final_newline_is_told() {
        assert_eq!(
            lines_of(b"a\nbb\n\nccc"),
            vec![
                (1, Ok(b"a".to_vec()), true),
                (2, Ok(b"bb".to_vec()), true),
                (3, Ok(Vec::new()), true),
                (4, Ok(b"ccc".to_vec()), false),
            ]
        );
        assert_eq!(lines_of(b"a\n"), vec![(1, Ok(b"a".to_vec()), true)]);
        assert!(lines_of(b"").is_empty());
    }

    #[test]
    fn a_line_longer_than_any_record_is_skipped_by_length_and_the_next_lines_follow() {
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * MAX_RECORD_BYTES + 17));
        input.extend_from_slice(b"\nafter\nlast");
        let lines = lines_of(&input);
        assert_eq!(
            lines,
            vec![
                (1, Ok(b"first".to_vec()), true),
                (2, Err(3 * MAX_RECORD_BYTES as u64 + 17), true),
                (3, Ok(b"after".to_vec()), true),
                (4, Ok(b"last".to_vec()), false),
            ]
        );
        let endless = vec![b'y'; 2 * MAX_RECORD_BYTES];
        assert_eq!(
            lines_of(&endless),
            vec![(1, Err(2 * MAX_RECORD_BYTES as u64), false)]
        );
        // A record of exactly the largest size is a line like any other.
        let mut largest = vec![b'z'; MAX_RECORD_BYTES];
        largest.push(b'\n');
        assert_eq!(
            lines_of(&largest),
            vec![(1, Ok(largest[..MAX_RECORD_BYTES].to_vec()), true)]
        );
    }
}
