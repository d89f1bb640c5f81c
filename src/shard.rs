//! Splitting one image set over N machines (`--shard I/N`) with no coordinator: every machine computes the
//! same plan from the same tree and builds the images it owns.
//!
//! The work of a Kolla tree sits below a short trunk (upstream: `base`, `openstack-base`, then some 60
//! independent service subtrees). A node whose subtree holds more than a fair share (`total / N` steps)
//! is trunk: everyone needs it, so it is not a unit of its own; each subtree below the trunk is a unit.
//! Units go to the least-loaded shard, largest first (LPT); the trunk goes to shard 0, counted in its
//! load. Ties break by name, so the plan depends only on the tree. Weights are build steps (RUN, COPY,
//! ADD: the instructions that make layers).
//!
//! A shard gets the parents it does not own from the step cache the owner publishes to (`--cache-repo`),
//! waiting for each step — so every layer is built once, by its owner.

use std::fmt;
use std::str::FromStr;

/// `--shard I/N`: this machine is shard `index` (0-based, so `$JOB_COMPLETION_INDEX/N` works) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index of this shard.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("{s:?}: expected I/N with 0 <= I < N (e.g. 0/3)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One image of the set to plan.
#[derive(Debug, Clone)]
pub struct Item {
    /// Image name (ties in the plan break by it).
    pub name: String,
    /// Index of its parent in the slice, if the parent is part of the set.
    pub parent: Option<usize>,
    /// Its build steps.
    pub steps: u64,
}

/// Who builds what, and what that costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Owning shard per item.
    pub owner: Vec<usize>,
    /// Steps each shard builds.
    pub load: Vec<u64>,
    /// All steps.
    pub total: u64,
    /// The longest chain of steps from a root to a leaf: no number of machines finishes sooner.
    pub longest_chain: u64,
    /// Estimated finish, in steps, when each shard builds its images one at a time, each as soon as its
    /// parent is there (list scheduling in tree order).
    pub makespan: u64,
}

/// Plan `items` over `count` shards.
pub fn plan(items: &[Item], count: usize) -> Plan {
    let count = count.max(1);
    let n = items.len();
    let mut children = vec![Vec::new(); n];
    for (i, it) in items.iter().enumerate() {
        if let Some(p) = it.parent {
            children[p].push(i);
        }
    }
    let order = topo_order(items, &children);
    let mut weight: Vec<u64> = items.iter().map(|it| it.steps).collect();
    for &i in order.iter().rev() {
        if let Some(p) = items[i].parent {
            weight[p] += weight[i];
        }
    }
    let total: u64 = items.iter().map(|it| it.steps).sum();
    let fair = total.div_ceil(count as u64);

    // Walk down from the roots: a node too heavy for one shard (with children to split) is trunk.
    let mut owner = vec![usize::MAX; n];
    let mut load = vec![0u64; count];
    let mut units = Vec::new();
    let mut stack: Vec<usize> = (0..n).filter(|&i| items[i].parent.is_none()).collect();
    while let Some(i) = stack.pop() {
        if weight[i] > fair && !children[i].is_empty() {
            owner[i] = 0;
            load[0] += items[i].steps;
            stack.extend(&children[i]);
        } else {
            units.push(i);
        }
    }
    units.sort_by(|&a, &b| weight[b].cmp(&weight[a]).then_with(|| items[a].name.cmp(&items[b].name)));
    for u in units {
        let shard = (0..count).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        load[shard] += weight[u];
        let mut stack = vec![u];
        while let Some(i) = stack.pop() {
            owner[i] = shard;
            stack.extend(&children[i]);
        }
    }

    let mut finish = vec![0u64; n];
    let mut free = vec![0u64; count];
    let mut chain = vec![0u64; n];
    for &i in &order {
        let ready = items[i].parent.map_or(0, |p| finish[p]);
        let start = ready.max(free[owner[i]]);
        finish[i] = start + items[i].steps;
        free[owner[i]] = finish[i];
        chain[i] = items[i].parent.map_or(0, |p| chain[p]) + items[i].steps;
    }
    Plan {
        owner,
        load,
        total,
        longest_chain: chain.iter().copied().max().unwrap_or(0),
        makespan: finish.iter().copied().max().unwrap_or(0),
    }
}

/// Parents before children; among ready items, by depth then name (so the simulation is stable).
fn topo_order(items: &[Item], children: &[Vec<usize>]) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::with_capacity(items.len());
    let mut level: Vec<usize> = (0..items.len()).filter(|&i| items[i].parent.is_none()).collect();
    while !level.is_empty() {
        level.sort_by(|&a, &b| items[a].name.cmp(&items[b].name));
        order.extend(&level);
        level = level.iter().flat_map(|&i| children[i].iter().copied()).collect();
    }
    order
}

/// The plan as text: per shard its images and steps, then the totals.
pub fn describe(items: &[Item], plan: &Plan) -> String {
    let mut out = String::new();
    for (s, load) in plan.load.iter().enumerate() {
        let mut names: Vec<&str> =
            items.iter().zip(&plan.owner).filter(|(_, o)| **o == s).map(|(it, _)| it.name.as_str()).collect();
        names.sort_unstable();
        out.push_str(&format!(
            "shard {s}/{}: {load} steps, {} images: {}\n",
            plan.load.len(),
            names.len(),
            names.join(" ")
        ));
    }
    out.push_str(&format!(
        "total {} steps; longest chain {} steps; estimated finish {} steps ({:.1}x faster than one machine)\n",
        plan.total,
        plan.longest_chain,
        plan.makespan,
        plan.total as f64 / plan.makespan.max(1) as f64
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// base(10) → os-base(10) → {svc-a(30) → a1(5), a2(5); svc-b(20); svc-c(10)}; base → cron(3).
    fn tree() -> Vec<Item> {
        let it = |name: &str, parent: Option<usize>, steps| Item { name: name.into(), parent, steps };
        vec![
            it("base", None, 10),
            it("os-base", Some(0), 10),
            it("svc-a", Some(1), 30),
            it("a1", Some(2), 5),
            it("a2", Some(2), 5),
            it("svc-b", Some(1), 20),
            it("svc-c", Some(1), 10),
            it("cron", Some(0), 3),
        ]
    }

    #[test]
    fn shard_syntax() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/3", "1/0", "1", "a/b", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn one_shard_owns_everything() {
        let p = plan(&tree(), 1);
        assert!(p.owner.iter().all(|&o| o == 0));
        assert_eq!((p.total, p.makespan, p.longest_chain), (93, 93, 55));
    }

    #[test]
    fn subtrees_below_the_trunk_are_balanced() {
        let items = tree();
        let p = plan(&items, 3);
        // Fair share is 31 steps: base, os-base and svc-a (40 below it) are trunk, on shard 0; the rest
        // (svc-b 20, svc-c 10, a1 5, a2 5, cron 3) go largest first to the least-loaded shard.
        let owner = |name: &str| p.owner[items.iter().position(|i| i.name == name).unwrap()];
        assert_eq!((owner("base"), owner("os-base"), owner("svc-a")), (0, 0, 0));
        assert_eq!((owner("svc-b"), owner("cron")), (1, 1));
        assert_eq!((owner("svc-c"), owner("a1"), owner("a2")), (2, 2, 2));
        assert_eq!(p.load, [50, 23, 20]);
        assert_eq!(p.load.iter().sum::<u64>(), p.total);
        assert!(p.makespan < p.total && p.makespan >= p.longest_chain, "{p:?}");
        // Every machine computes the same plan.
        assert_eq!(plan(&items, 3), p);
    }

    #[test]
    fn more_shards_than_units_leaves_some_idle() {
        let p = plan(&tree(), 16);
        assert_eq!(p.load.len(), 16);
        assert!(p.makespan >= p.longest_chain, "{p:?}");
        assert!(p.load.iter().filter(|&&l| l == 0).count() >= 10);
    }
}
