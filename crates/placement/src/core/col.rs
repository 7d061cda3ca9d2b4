//! A column of the host table: one contiguous vector behind an `Arc`.
//!
//! Readers (numpy views handed to Python) keep a clone of the `Arc`, so they see a
//! stable snapshot without a copy; a writer that finds the column shared copies it
//! first (`Arc::make_mut`). Unshared columns are written in place.

use std::ops::Deref;
use std::sync::Arc;

#[derive(Debug)]
pub struct Col<T>(Arc<Vec<T>>);

impl<T> Clone for Col<T> {
    fn clone(&self) -> Self {
        Col(Arc::clone(&self.0))
    }
}

impl<T> Default for Col<T> {
    fn default() -> Self {
        Col(Arc::new(Vec::new()))
    }
}

impl<T: Clone> Col<T> {
    pub fn from_vec(v: Vec<T>) -> Self {
        Col(Arc::new(v))
    }

    /// Mutable access; copies the data first if a reader still holds it.
    pub fn make_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.0)
    }

    pub fn set(&mut self, i: usize, v: T) {
        self.make_mut()[i] = v;
    }

    pub fn push(&mut self, v: T) {
        self.make_mut().push(v);
    }

    pub fn remove(&mut self, i: usize) {
        self.make_mut().remove(i);
    }

    /// The shared vector, for zero-copy views.
    pub fn shared(&self) -> Arc<Vec<T>> {
        Arc::clone(&self.0)
    }
}

impl<T> Deref for Col<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}
