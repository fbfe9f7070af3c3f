//! Routes by their leading literal path segments: which routes can match a
//! path at all, without trying each one.
//!
//! A route can only match a path whose first segments are the route's
//! leading literals (`/v1/users/{id}` needs `v1`, `users`), so the routes
//! live in a tree keyed by those segments, and a path's candidates are the
//! routes on the nodes its own segments walk through. Two routes can only
//! overlap when one's node is on the other's walk, which also keeps
//! `check` from comparing every pair of routes (20,000 routes took minutes
//! that way; a tree per path segment is what NGINX's location tree and
//! most routers do). Matching itself stays with the patterns: this only
//! leaves out routes that cannot match.

/// How deep the tree goes: routes with more leading literals sit at this
/// depth (a node above their own is still on every path they match), and
/// a walk's cursors fit in a fixed array.
const MAX_DEPTH: usize = 15;

#[derive(Debug, Clone, Default)]
struct Node {
    /// Children by segment, sorted (binary search: no hashing per segment).
    children: Vec<(Box<str>, u32)>,
    /// Routes whose literals end here, as positions in the router's
    /// precedence order, ascending.
    routes: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Index {
    nodes: Vec<Node>,
}

impl Default for Index {
    fn default() -> Index {
        Index { nodes: vec![Node::default()] }
    }
}

impl Index {
    /// `literals[position]`: the leading literal segments of the route at
    /// that position of the precedence order.
    pub fn new<'a, I, S>(literals: I) -> Index
    where
        I: IntoIterator<Item = S>,
        S: IntoIterator<Item = &'a str>,
    {
        let mut index = Index::default();
        for (position, segments) in literals.into_iter().enumerate() {
            let mut node = 0;
            for segment in segments.into_iter().take(MAX_DEPTH) {
                node = index.child_or_insert(node, segment);
            }
            index.nodes[node].routes.push(position as u32);
        }
        index
    }

    fn child_or_insert(&mut self, node: usize, segment: &str) -> usize {
        let next = self.nodes.len() as u32;
        let children = &mut self.nodes[node].children;
        match children.binary_search_by(|(s, _)| (**s).cmp(segment)) {
            Ok(i) => children[i].1 as usize,
            Err(i) => {
                children.insert(i, (segment.into(), next));
                self.nodes.push(Node::default());
                next as usize
            }
        }
    }

    fn child(&self, node: usize, segment: &str) -> Option<usize> {
        let children = &self.nodes[node].children;
        children.binary_search_by(|(s, _)| (**s).cmp(segment)).ok().map(|i| children[i].1 as usize)
    }

    /// The positions of the routes that may match `path`, ascending (so in
    /// precedence order).
    pub fn candidates(&self, path: &str) -> Candidates<'_> {
        let mut walk = Candidates { index: self, nodes: [0; MAX_DEPTH + 1], cursors: [0; MAX_DEPTH + 1], len: 1 };
        if let Some(rest) = path.strip_prefix('/') {
            let mut node = 0;
            for segment in rest.split('/').take(MAX_DEPTH) {
                match self.child(node, segment) {
                    Some(next) => node = next,
                    None => break,
                }
                walk.nodes[walk.len] = node as u32;
                walk.len += 1;
            }
        }
        walk
    }

    /// Every pair of positions (earlier, later) that could match one path:
    /// the routes of a node with each other and with those of the nodes
    /// above it. Not in any particular order.
    pub fn pairs(&self, mut each: impl FnMut(usize, usize)) {
        // (node, the routes of the nodes above it), depth first.
        let mut stack: Vec<(usize, Vec<u32>)> = vec![(0, Vec::new())];
        while let Some((node, above)) = stack.pop() {
            let here = &self.nodes[node].routes;
            for (i, &a) in here.iter().enumerate() {
                for &b in &here[i + 1..] {
                    each(a as usize, b as usize);
                }
                for &b in &above {
                    each(a.min(b) as usize, a.max(b) as usize);
                }
            }
            let mut below = above;
            below.extend_from_slice(here);
            for &(_, child) in &self.nodes[node].children {
                stack.push((child as usize, below.clone()));
            }
        }
    }
}

/// A merge of the route lists on a path's walk, ascending.
pub struct Candidates<'a> {
    index: &'a Index,
    nodes: [u32; MAX_DEPTH + 1],
    cursors: [u32; MAX_DEPTH + 1],
    len: usize,
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let mut best: Option<(usize, u32)> = None;
        for i in 0..self.len {
            let routes = &self.index.nodes[self.nodes[i] as usize].routes;
            if let Some(&position) = routes.get(self.cursors[i] as usize)
                && best.is_none_or(|(_, p)| position < p)
            {
                best = Some((i, position));
            }
        }
        let (i, position) = best?;
        self.cursors[i] += 1;
        Some(position as usize)
    }
}
