//! A first-in first-out queue addressed by sequence number, stored in fixed-size chunks so that
//! memory follows the content: a chunk is allocated when the tail needs it and freed as soon as
//! the head leaves it.

use std::collections::VecDeque;

/// Entries per chunk.
pub(crate) const CHUNK: usize = 512;

pub(crate) struct Fifo<T> {
    chunks: VecDeque<Box<[T]>>,
    /// Sequence number of `chunks[0][0]`; a multiple of [`CHUNK`].
    base: u64,
    /// Sequence number of the oldest entry.
    head: u64,
    /// Sequence number the next entry gets.
    tail: u64,
}

impl<T: Copy + Default> Fifo<T> {
    pub(crate) fn new() -> Self {
        Self {
            chunks: VecDeque::new(),
            base: 0,
            head: 0,
            tail: 0,
        }
    }

    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    pub(crate) fn len(&self) -> u64 {
        self.tail - self.head
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Whether the next push allocates a chunk.
    pub(crate) fn push_allocates(&self) -> bool {
        self.tail == self.base + (self.chunks.len() * CHUNK) as u64
    }

    /// Heap bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.chunks.len() * CHUNK * size_of::<T>() + self.chunks.capacity() * size_of::<Box<[T]>>()
    }

    /// Appends `value`, returning its sequence number.
    pub(crate) fn push(&mut self, value: T) -> u64 {
        if self.push_allocates() {
            self.chunks
                .push_back(vec![T::default(); CHUNK].into_boxed_slice());
        }
        let seq = self.tail;
        let (chunk, offset) = self.locate(seq);
        self.chunks[chunk][offset] = value;
        self.tail += 1;
        seq
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&T> {
        self.contains(seq).then(|| {
            let (chunk, offset) = self.locate(seq);
            &self.chunks[chunk][offset]
        })
    }

    pub(crate) fn get_mut(&mut self, seq: u64) -> Option<&mut T> {
        self.contains(seq).then(|| {
            let (chunk, offset) = self.locate(seq);
            &mut self.chunks[chunk][offset]
        })
    }

    pub(crate) fn front(&self) -> Option<&T> {
        self.get(self.head)
    }

    /// Drops the oldest entry, freeing its chunk if it was the chunk's last.
    pub(crate) fn pop_front(&mut self) {
        if self.is_empty() {
            return;
        }
        self.head += 1;
        if self.head - self.base == CHUNK as u64 {
            self.chunks.pop_front();
            self.base += CHUNK as u64;
        }
    }

    /// Entries from `from` (clamped to the head) to the tail, with their sequence numbers.
    pub(crate) fn iter_from(&self, from: u64) -> impl Iterator<Item = (u64, &T)> {
        (from.max(self.head)..self.tail).filter_map(move |seq| self.get(seq).map(|v| (seq, v)))
    }

    fn contains(&self, seq: u64) -> bool {
        self.head <= seq && seq < self.tail
    }

    fn locate(&self, seq: u64) -> (usize, usize) {
        let offset = (seq - self.base) as usize;
        (offset / CHUNK, offset % CHUNK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_follows_content() {
        let mut fifo = Fifo::<u64>::new();
        assert_eq!(fifo.bytes(), 0);
        for i in 0..(3 * CHUNK as u64) {
            assert_eq!(fifo.push(i * 10), i);
        }
        assert_eq!(fifo.len(), 3 * CHUNK as u64);
        assert_eq!(fifo.get(5), Some(&50));
        for _ in 0..=(2 * CHUNK) {
            fifo.pop_front();
        }
        assert_eq!(fifo.head(), 2 * CHUNK as u64 + 1);
        assert_eq!(fifo.get(5), None);
        assert_eq!(fifo.front(), Some(&((2 * CHUNK as u64 + 1) * 10)));
        assert_eq!(fifo.chunks.len(), 1, "two chunks were freed");
        let tail: Vec<u64> = fifo.iter_from(0).map(|(s, _)| s).collect();
        assert_eq!(tail.len(), CHUNK - 1);
        assert_eq!(tail[0], fifo.head());
    }
}
