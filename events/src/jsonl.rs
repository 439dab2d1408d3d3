//! An export read as it streams in: large blocks of whole lines, in time linear in the input and
//! memory bounded whatever it holds. A line longer than the largest record the server can write is
//! not held: it is skipped as it is read and reported by its number, so a hostile file (one line of
//! 128 MiB, no newline at all) costs one pass over its bytes.

use std::io::Read;

use crate::record::MAX_RECORD_BYTES;

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

/// Why a line is not a record before anything parses it: longer than any record.
pub fn oversized_reason(length: u64) -> String {
    format!("a line of {length} bytes, longer than the largest record ({MAX_RECORD_BYTES} bytes)")
}

/// Splits an input into [`Piece`]s.
pub struct Blocks<R> {
    input: R,
    /// Bytes read after the last newline handed out: part of the next line.
    carry: Vec<u8>,
    /// How many bytes at the start of `carry` are known to hold no newline.
    searched: usize,
    next_line: u64,
    at_end: bool,
    failed: bool,
}

impl<R: Read> Blocks<R> {
    /// Reads `input` from its start.
    pub fn new(input: R) -> Self {
        Self {
            input,
            carry: Vec::new(),
            searched: 0,
            next_line: 1,
            at_end: false,
            failed: false,
        }
    }

    /// Appends up to [`BLOCK`] bytes of input to `buffer`; sets `at_end` at the end of the input.
    fn read_more(&mut self, buffer: &mut Vec<u8>) -> std::io::Result<()> {
        let start = buffer.len();
        buffer.resize(start + BLOCK, 0);
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
        let newlines = memchr::memchr_iter(b'\n', &bytes).count() as u64;
        self.next_line += newlines + u64::from(!complete);
        Piece::Lines {
            first_line,
            bytes,
            complete,
        }
    }

    /// Skips the rest of a line already `length` bytes long, without keeping it.
    fn skip_line(&mut self, mut length: u64) -> std::io::Result<Piece> {
        let line = self.next_line;
        self.next_line += 1;
        let mut buffer = Vec::with_capacity(BLOCK);
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
            if block.len() > MAX_RECORD_BYTES {
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
    pub fn lines(&self) -> Box<dyn Iterator<Item = Line<'_>> + '_> {
        match self {
            Self::Lines {
                first_line,
                bytes,
                complete,
            } => {
                let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
                let count = body.split(|byte| *byte == b'\n').count();
                Box::new(
                    body.split(|byte| *byte == b'\n')
                        .enumerate()
                        .map(move |(index, line)| Line {
                            number: first_line + index as u64,
                            bytes: if line.len() > MAX_RECORD_BYTES {
                                Err(line.len() as u64)
                            } else {
                                Ok(line)
                            },
                            complete: *complete || index + 1 < count,
                        }),
                )
            }
            Self::Oversized {
                line,
                length,
                complete,
            } => Box::new(std::iter::once(Line {
                number: *line,
                bytes: Err(*length),
                complete: *complete,
            })),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test
mod tests {
    use super::*;

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

    #[test]
    fn every_split_of_the_input_gives_the_same_lines() {
        // Reads of any size: the splitter must not depend on where reads end.
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
                let count = self.1.min(self.0.len()).min(buffer.len());
                buffer[..count].copy_from_slice(&self.0[..count]);
                self.0 = &self.0[count..];
                Ok(count)
            }
        }
        let input = b"one\ntwo\n\nthree\nfour";
        let whole = lines_of(input);
        for size in 1..8 {
            let trickled: Vec<_> = Blocks::new(Trickle(input, size))
                .map(Result::unwrap)
                .flat_map(|piece| {
                    piece
                        .lines()
                        .map(|line| (line.number, line.bytes.map(<[u8]>::to_vec), line.complete))
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(trickled, whole, "reads of {size} bytes");
        }
    }
}
