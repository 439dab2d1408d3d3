//! The view's text arena: texts kept for good, packed end to end in large chunks.

/// Where a text lies in a [`Texts`] arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TextRef {
    pub(super) chunk: u32,
    pub(super) start: u32,
    pub(super) len: u32,
}

/// Texts kept for good (patient ids, ids that are not UUIDs), packed end to end in large chunks:
/// as many small strings they would each cost an allocation and pin the allocator's pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Texts {
    chunks: Vec<String>,
}

pub(super) const TEXT_CHUNK: usize = 64 * 1024;

impl Texts {
    /// Keeps `text`; `None` past four billion chunks.
    pub(super) fn push(&mut self, text: &str) -> Option<TextRef> {
        let fits = self
            .chunks
            .last()
            .is_some_and(|chunk| chunk.capacity() - chunk.len() >= text.len());
        if !fits {
            self.chunks
                .push(String::with_capacity(TEXT_CHUNK.max(text.len())));
        }
        let index = self.chunks.len() - 1;
        let chunk = self.chunks.last_mut()?;
        let start = chunk.len();
        chunk.push_str(text);
        Some(TextRef {
            chunk: u32::try_from(index).ok()?,
            start: u32::try_from(start).ok()?,
            len: u32::try_from(text.len()).ok()?,
        })
    }

    pub(super) fn get(&self, at: TextRef) -> &str {
        let start = at.start as usize;
        self.chunks
            .get(at.chunk as usize)
            .and_then(|chunk| chunk.get(start..start + at.len as usize))
            .unwrap_or_default()
    }
}
