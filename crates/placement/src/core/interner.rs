//! Interning of repeated values (hypervisor types, aggregate sets, trait sets...).
//! Hosts store a `u32` id; a request's check is evaluated once per distinct value
//! and then gathered per host, which keeps the per-host passes over plain integers.

use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone)]
pub struct Interner<K> {
    items: Vec<K>,
    ids: HashMap<K, u32>,
}

impl<K: Hash + Eq + Clone> Default for Interner<K> {
    fn default() -> Self {
        Interner { items: Vec::new(), ids: HashMap::new() }
    }
}

impl<K: Hash + Eq + Clone> Interner<K> {
    pub fn intern(&mut self, k: K) -> u32 {
        if let Some(&id) = self.ids.get(&k) {
            return id;
        }
        let id = self.items.len() as u32;
        self.items.push(k.clone());
        self.ids.insert(k, id);
        id
    }

    pub fn lookup(&self, k: &K) -> Option<u32> {
        self.ids.get(k).copied()
    }

    pub fn get(&self, id: u32) -> &K {
        &self.items[id as usize]
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &K)> {
        self.items.iter().enumerate().map(|(i, k)| (i as u32, k))
    }
}
